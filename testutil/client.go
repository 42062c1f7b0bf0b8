package testutil

import (
	"bytes"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"testing"

	"github.com/PuerkitoBio/goquery"
)

// Client is a browser-like HTTP client: it keeps cookies, follows
// redirects, and submits forms the way a browser would, hidden fields and
// CSRF token included. It sends no Sec-Fetch-Site header, so the CSRF
// token path is what gets tested.
type Client struct {
	t    testing.TB
	base string
	HTTP *http.Client
}

// NewClient returns a client with an empty cookie jar.
func (a *App) NewClient(t testing.TB) *Client {
	jar, _ := cookiejar.New(nil)
	return &Client{t: t, base: a.Server.URL, HTTP: &http.Client{Jar: jar}}
}

// Page is a response with its parsed HTML.
type Page struct {
	Status int
	URL    *url.URL // after redirects
	Header http.Header
	Body   string // the parsed document, serialised again
	Raw    string // the bytes as the server sent them
	Doc    *goquery.Document
}

// Get fetches a path.
func (c *Client) Get(path string) *Page {
	c.t.Helper()
	req, err := http.NewRequest(http.MethodGet, c.base+path, nil)
	if err != nil {
		c.t.Fatal(err)
	}
	return c.Do(req)
}

// Do sends a request and parses the answer.
func (c *Client) Do(req *http.Request) *Page {
	c.t.Helper()
	res, err := c.HTTP.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		c.t.Fatalf("read %s: %v", req.URL, err)
	}
	doc, err := goquery.NewDocumentFromReader(bytes.NewReader(raw))
	if err != nil {
		c.t.Fatalf("parse %s: %v", req.URL, err)
	}
	html, _ := doc.Html()
	return &Page{Status: res.StatusCode, URL: res.Request.URL, Header: res.Header, Body: html, Raw: string(raw), Doc: doc}
}

// PostForm posts fields to a path as they are, with no CSRF token added.
func (c *Client) PostForm(path string, fields url.Values) *Page {
	c.t.Helper()
	req, err := http.NewRequest(http.MethodPost, c.base+path, strings.NewReader(fields.Encode()))
	if err != nil {
		c.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return c.Do(req)
}

// Submit fills the form matched by selector on page with fields and posts
// it to the form's action. Like a browser, it sends every control's current
// value (hidden inputs and the CSRF token included, checked boxes, selected
// options); fields replace the values of the controls they name.
func (c *Client) Submit(page *Page, selector string, fields map[string]string) *Page {
	c.t.Helper()
	form := page.Doc.Find(selector).First()
	if form.Length() == 0 {
		c.t.Fatalf("no form %q on %s:\n%s", selector, page.URL, page.Body)
	}
	values := formValues(form)
	for k, v := range fields {
		if form.Find("[name='"+k+"']").Length() == 0 {
			c.t.Fatalf("form %q has no field %q", selector, k)
		}
		values.Set(k, v)
	}
	action, _ := form.Attr("action")
	return c.PostForm(action, values)
}

func formValues(form *goquery.Selection) url.Values {
	values := url.Values{}
	form.Find("input, textarea, select").Each(func(_ int, s *goquery.Selection) {
		name, ok := s.Attr("name")
		if !ok || name == "" {
			return
		}
		if _, disabled := s.Attr("disabled"); disabled {
			return
		}
		switch goquery.NodeName(s) {
		case "textarea":
			values.Add(name, s.Text())
		case "select":
			opt := s.Find("option[selected]").First()
			if opt.Length() == 0 {
				opt = s.Find("option").First()
			}
			if v, ok := opt.Attr("value"); ok {
				values.Add(name, v)
			}
		default:
			typ, _ := s.Attr("type")
			_, checked := s.Attr("checked")
			if (typ == "checkbox" || typ == "radio") && !checked || typ == "submit" || typ == "button" {
				return
			}
			v, _ := s.Attr("value")
			values.Add(name, v)
		}
	})
	return values
}

// Fragment parses a response that is a table row, which an HTML document
// parser would otherwise drop outside its table.
func (p *Page) Fragment() *goquery.Document {
	doc, _ := goquery.NewDocumentFromReader(strings.NewReader("<table><tbody>" + p.Raw + "</tbody></table>"))
	return doc
}

// Text is the trimmed text of the elements matching selector.
func (p *Page) Text(selector string) string {
	return strings.TrimSpace(p.Doc.Find(selector).Text())
}
