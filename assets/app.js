// Keysmith's only script: small progressive enhancements. Every form works
// without it; CSP forbids inline scripts, so behaviour hangs off data-* attributes.
(function () {
  "use strict";
  var csrf = document.querySelector('meta[name="csrf-token"]');

  // HTMX requests carry the same CSRF token the forms carry in _csrf.
  document.addEventListener("htmx:configRequest", function (e) {
    if (csrf) e.detail.headers["X-CSRF-Token"] = csrf.content;
  });

  // <form data-confirm="…"> asks before a destructive action.
  document.addEventListener("submit", function (e) {
    var msg = e.target.getAttribute && e.target.getAttribute("data-confirm");
    if (msg && !window.confirm(msg)) e.preventDefault();
  }, true);

  // <select data-autosubmit> submits its form when changed.
  document.addEventListener("change", function (e) {
    if (e.target.matches && e.target.matches("select[data-autosubmit]")) e.target.form.requestSubmit();
  });

  // <button data-copy="#id"> copies that field's value; <button
  // data-copy-text="…"> copies its own text (a key's hint).
  document.addEventListener("click", function (e) {
    var btn = e.target.closest && e.target.closest("[data-copy], [data-copy-text]");
    if (!btn) return;
    var field = btn.hasAttribute("data-copy-text") ? { value: btn.getAttribute("data-copy-text"), select: function () {} } : document.querySelector(btn.getAttribute("data-copy"));
    if (!field) return;
    var done = function () {
      var label = btn.textContent;
      btn.textContent = "Copied";
      announce("Copied to the clipboard");
      setTimeout(function () { btn.textContent = label; }, 2000);
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(field.value).then(done);
    } else {
      field.select();
      document.execCommand("copy");
      done();
    }
  });

  // announce says something to screen readers through the page's live region.
  function announce(msg) {
    var region = document.getElementById("announce");
    if (!region) return;
    region.textContent = "";
    setTimeout(function () { region.textContent = msg; }, 50);
  }

  // After an in-place rename (saved or cancelled) the row is replaced:
  // focus goes back to its Rename button, not to <body>.
  var restoreRow = null;
  document.addEventListener("htmx:beforeRequest", function (e) {
    var edit = e.target.closest && e.target.closest("tr.editing");
    restoreRow = edit ? edit.id : null;
  });
  document.addEventListener("htmx:load", function (e) {
    var elt = e.detail.elt;
    if (!restoreRow || !elt || elt.id !== restoreRow) return;
    restoreRow = null;
    var target = elt.classList.contains("editing") ? elt.querySelector("input[name=name]") : elt.querySelector("[hx-get$='/edit']") || elt.querySelector("a");
    if (target) target.focus();
  });

  // A link to #rotate or #revoke (the list's row menu) opens that card's
  // confirmation and puts focus on it.
  function openTarget() {
    var card = location.hash && document.getElementById(location.hash.slice(1));
    var d = card && card.querySelector("details.confirm");
    if (!d) return;
    d.open = true;
    d.querySelector("summary").focus();
  }
  document.addEventListener("DOMContentLoaded", openTarget);
  document.addEventListener("htmx:afterSettle", function (e) { if (e.target === document.body) openTarget(); });

  // Escape cancels an in-place rename and closes an open confirmation
  // (Rotate, Revoke, Remove…), returning focus to what opened it.
  document.addEventListener("keydown", function (e) {
    if (e.key !== "Escape" || !e.target.closest) return;
    var edit = e.target.closest("form.inline-edit");
    if (edit) {
      var cancel = edit.querySelector("[hx-get$='/row']");
      if (cancel) { e.preventDefault(); cancel.click(); }
      return;
    }
    var open = e.target.closest("details[open]");
    if (open) {
      e.preventDefault();
      open.open = false;
      var summary = open.querySelector("summary");
      if (summary) summary.focus();
    }
  });
})();
