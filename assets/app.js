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

  // <button data-copy="#id"> copies that field's value.
  document.addEventListener("click", function (e) {
    var btn = e.target.closest && e.target.closest("[data-copy]");
    if (!btn) return;
    var field = document.querySelector(btn.getAttribute("data-copy"));
    if (!field) return;
    var done = function () {
      var label = btn.textContent;
      btn.textContent = "Copied";
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
})();
