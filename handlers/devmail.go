package handlers

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"

	"keysmith/mailer"
	"keysmith/views"
)

// The dev mailbox exists only when no SMTP server is configured.

func (h *Handlers) mailbox(c echo.Context) error {
	var rows []views.MailSummary
	for _, m := range h.Mailbox.List() {
		rows = append(rows, views.MailSummary{ID: m.ID, To: strings.Join(m.To, ", "), Subject: m.Subject, Received: m.ReceivedAt.Format("2 Jan 2006 15:04:05 MST")})
	}
	return h.render(c, http.StatusOK, views.DevPage, views.Shell{Title: "Dev mailbox"}, views.MailboxPage(rows))
}

func (h *Handlers) storedMail(c echo.Context) (mailer.Stored, error) {
	id, err := strconv.Atoi(c.Param("id"))
	if err != nil {
		return mailer.Stored{}, echo.NewHTTPError(http.StatusNotFound)
	}
	m, ok := h.Mailbox.Get(id)
	if !ok {
		return mailer.Stored{}, echo.NewHTTPError(http.StatusNotFound)
	}
	return m, nil
}

func (h *Handlers) mailboxMessage(c echo.Context) error {
	m, err := h.storedMail(c)
	if err != nil {
		return err
	}
	view := views.MailView{
		ID: m.ID, From: m.From, To: strings.Join(m.To, ", "), Subject: m.Subject,
		Received: m.ReceivedAt.Format("2 Jan 2006 15:04:05 MST"), MessageID: m.MessageID, Text: m.Text,
	}
	return h.render(c, http.StatusOK, views.DevPage, views.Shell{Title: m.Subject}, views.MailPage(view))
}

// mailboxHTML serves a message's HTML part to the sandboxed iframe on the
// message page, under a policy that allows the email's inline styles and
// nothing else.
func (h *Handlers) mailboxHTML(c echo.Context) error {
	m, err := h.storedMail(c)
	if err != nil {
		return err
	}
	c.Response().Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'self'; sandbox")
	c.Response().Header().Set("X-Frame-Options", "SAMEORIGIN")
	return c.HTML(http.StatusOK, m.HTML)
}
