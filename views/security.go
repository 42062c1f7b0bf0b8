package views

import (
	"encoding/base64"
	"fmt"
	"net/url"
	"strings"

	qrcode "github.com/yeqown/go-qrcode/v2"
)

// QRDataURL renders text (an otpauth:// URL) as a QR code: an SVG of
// one-module squares, as a data: URL for an <img> (the CSP allows
// img-src data:).
func QRDataURL(text string) (string, error) {
	qr, err := qrcode.NewWith(text, qrcode.WithErrorCorrectionLevel(qrcode.ErrorCorrectionMedium))
	if err != nil {
		return "", err
	}
	w := &svgWriter{}
	if err := qr.Save(w); err != nil {
		return "", err
	}
	return "data:image/svg+xml;base64," + base64.StdEncoding.EncodeToString([]byte(w.svg)), nil
}

// svgWriter is a qrcode.Writer that keeps the matrix as SVG, with the
// four-module quiet zone the standard asks for.
type svgWriter struct{ svg string }

func (w *svgWriter) Write(mat qrcode.Matrix) error {
	const quiet = 4
	size := mat.Width() + 2*quiet
	var path strings.Builder
	mat.Iterate(qrcode.IterDirection_ROW, func(x, y int, v qrcode.QRValue) {
		if v.IsSet() {
			fmt.Fprintf(&path, "M%d %dh1v1h-1z", x+quiet, y+quiet)
		}
	})
	w.svg = fmt.Sprintf(`<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %d %d" shape-rendering="crispEdges"><rect width="100%%" height="100%%" fill="#fff"/><path fill="#000" d="%s"/></svg>`, size, size, path.String())
	return nil
}

func (w *svgWriter) Close() error { return nil }

// DeviceName names a browser and its system from a User-Agent header,
// such as "Firefox on macOS"; "Unknown browser" when it tells nothing.
func DeviceName(ua string) string {
	browser := ""
	// Order matters: Edge and Opera also say Chrome, Chrome also says Safari.
	for _, b := range []struct{ token, name string }{
		{"Edg/", "Edge"}, {"OPR/", "Opera"}, {"Firefox/", "Firefox"}, {"FxiOS/", "Firefox"},
		{"CriOS/", "Chrome"}, {"HeadlessChrome/", "Headless Chrome"}, {"Chromium/", "Chromium"}, {"Chrome/", "Chrome"},
		{"Safari/", "Safari"}, {"curl/", "curl"}, {"Go-http-client/", "Go HTTP client"},
	} {
		if strings.Contains(ua, b.token) {
			browser = b.name
			break
		}
	}
	system := ""
	for _, s := range []struct{ token, name string }{
		{"iPhone", "iOS"}, {"iPad", "iPadOS"}, {"Android", "Android"}, {"CrOS", "ChromeOS"},
		{"Windows", "Windows"}, {"Mac OS X", "macOS"}, {"Macintosh", "macOS"}, {"Linux", "Linux"},
	} {
		if strings.Contains(ua, s.token) {
			system = s.name
			break
		}
	}
	switch {
	case browser != "" && system != "":
		return browser + " on " + system
	case browser != "":
		return browser
	case system != "":
		return "A browser on " + system
	}
	return "Unknown browser"
}

// RecoveryCodesFile is the .txt download of recovery codes, as a data: URL.
func RecoveryCodesFile(email string, codes []string) string {
	text := "Keysmith recovery codes for " + email + "\n" +
		"Each works once, in place of a code from your authenticator app.\n\n" +
		strings.Join(codes, "\n") + "\n"
	return "data:text/plain;charset=utf-8," + url.PathEscape(text)
}
