package testutil

import (
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
	t    *testing.T
	base string
	HTTP *http.Client
}

// NewClient returns a client with an empty cookie jar.
func (a *App) NewClient(t *testing.T) *Client {
	jar, _ := cookiejar.New(nil)
	return &Client{t: t, base: a.Server.URL, HTTP: &http.Client{Jar: jar}}
}

// Page is a response with its parsed HTML.
type Page struct {
	Status int
	URL    *url.URL // after redirects
	Header http.Header
	Body   string
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
	doc, err := goquery.NewDocumentFromReader(res.Body)
	if err != nil {
		c.t.Fatalf("parse %s: %v", req.URL, err)
	}
	html, _ := doc.Html()
	return &Page{Status: res.StatusCode, URL: res.Request.URL, Header: res.Header, Body: html, Doc: doc}
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
// it to the form's action, carrying its hidden inputs (the CSRF token).
func (c *Client) Submit(page *Page, selector string, fields map[string]string) *Page {
	c.t.Helper()
	form := page.Doc.Find(selector).First()
	if form.Length() == 0 {
		c.t.Fatalf("no form %q on %s:\n%s", selector, page.URL, page.Body)
	}
	values := url.Values{}
	form.Find("input[type=hidden]").Each(func(_ int, s *goquery.Selection) {
		name, _ := s.Attr("name")
		value, _ := s.Attr("value")
		values.Set(name, value)
	})
	for k, v := range fields {
		if form.Find("[name='"+k+"']").Length() == 0 {
			c.t.Fatalf("form %q has no field %q", selector, k)
		}
		values.Set(k, v)
	}
	action, _ := form.Attr("action")
	return c.PostForm(action, values)
}

// Text is the trimmed text of the elements matching selector.
func (p *Page) Text(selector string) string {
	return strings.TrimSpace(p.Doc.Find(selector).Text())
}
