// Passkeys (WebAuthn): the forms marked data-passkey ask the server for a
// ceremony's options (data-options), let the browser make or use a
// passkey, and post its answer in the form's "credential" field like any
// form. They stay hidden where the browser has no passkeys; the email
// field of /login also offers passkeys in the browser's autofill
// (conditional mediation).
(function () {
  "use strict";
  if (!window.PublicKeyCredential || !navigator.credentials) return;

  function csrf() {
    var m = document.querySelector('meta[name="csrf-token"]');
    return m ? m.content : "";
  }

  function decode(s) {
    s = s.replace(/-/g, "+").replace(/_/g, "/");
    while (s.length % 4) s += "=";
    var bin = atob(s), out = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out.buffer;
  }

  function encode(buf) {
    if (!buf) return null;
    var bytes = new Uint8Array(buf), bin = "";
    for (var i = 0; i < bytes.length; i++) bin += String.fromCharCode(bytes[i]);
    return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function creationOptions(o) {
    var pk = o.publicKey;
    pk.challenge = decode(pk.challenge);
    pk.user.id = decode(pk.user.id);
    (pk.excludeCredentials || []).forEach(function (c) { c.id = decode(c.id); });
    return pk;
  }

  function requestOptions(o) {
    var pk = o.publicKey;
    pk.challenge = decode(pk.challenge);
    (pk.allowCredentials || []).forEach(function (c) { c.id = decode(c.id); });
    return pk;
  }

  // credentialJSON is the browser's answer as the server parses it.
  function credentialJSON(cred) {
    var r = cred.response;
    var out = {
      id: cred.id, rawId: encode(cred.rawId), type: cred.type,
      authenticatorAttachment: cred.authenticatorAttachment || undefined,
      clientExtensionResults: cred.getClientExtensionResults ? cred.getClientExtensionResults() : {},
      response: { clientDataJSON: encode(r.clientDataJSON) }
    };
    if (r.attestationObject) {
      out.response.attestationObject = encode(r.attestationObject);
      out.response.transports = r.getTransports ? r.getTransports() : [];
    } else {
      out.response.authenticatorData = encode(r.authenticatorData);
      out.response.signature = encode(r.signature);
      out.response.userHandle = encode(r.userHandle);
    }
    return JSON.stringify(out);
  }

  function fetchOptions(url) {
    return fetch(url, {
      method: "POST", credentials: "same-origin",
      headers: { "X-CSRF-Token": csrf(), "Accept": "application/json" }
    }).then(function (res) {
      return res.json().catch(function () { return {}; }).then(function (body) {
        if (!res.ok) throw new Error(body.error || "The server did not answer. Please try again.");
        return body;
      });
    });
  }

  function message(err) {
    switch (err && err.name) {
      case "NotAllowedError": return "The passkey request was cancelled or timed out. Please try again.";
      case "InvalidStateError": return "This device already holds a passkey for your account.";
      case "AbortError": return "";
      case "SecurityError": return "This browser refuses passkeys for this address.";
      default: return (err && err.message) || "Something went wrong. Please try again.";
    }
  }

  function status(form, text, isError) {
    var s = form.querySelector(".passkey-status");
    if (!s) return;
    s.textContent = text;
    s.classList.toggle("error", !!isError);
  }

  // The answer goes in the form's field named by data-credential (the
  // Confirm access form carries the original form's own "credential").
  function submitWith(form, cred) {
    var field = form.getAttribute("data-credential") || "credential";
    form.querySelector('input[name="' + field + '"]').value = credentialJSON(cred);
    status(form, "Checking your passkey…");
    form.submit();
  }

  // The browser allows one request at a time: a click on a button first
  // ends the autofill's request, and waits until its options have come
  // (so they do not replace the button's in the session).
  var conditional = null;

  function run(form) {
    var kind = form.getAttribute("data-passkey");
    var url = form.getAttribute("data-options");
    var button = form.querySelector("button[type=submit]");
    var before = conditional ? (conditional.abort(), conditional.fetched) : Promise.resolve();
    conditional = null;
    button.disabled = true;
    status(form, "Waiting for your passkey…");
    before.catch(function () {}).then(function () {
      return fetchOptions(url);
    }).then(function (o) {
      if (kind === "register") return navigator.credentials.create({ publicKey: creationOptions(o) });
      return navigator.credentials.get({ publicKey: requestOptions(o) });
    }).then(function (cred) {
      if (!cred) throw new Error("No passkey was given.");
      submitWith(form, cred);
    }).catch(function (err) {
      button.disabled = false;
      status(form, message(err), true);
      button.focus();
    });
  }

  function autofill(form) {
    if (!PublicKeyCredential.isConditionalMediationAvailable) return;
    PublicKeyCredential.isConditionalMediationAvailable().then(function (ok) {
      if (!ok) return;
      var ctl = new AbortController();
      ctl.fetched = fetchOptions(form.getAttribute("data-options") + "?mediation=conditional");
      conditional = ctl;
      ctl.fetched.then(function (o) {
        if (ctl.signal.aborted) return null;
        return navigator.credentials.get({ publicKey: requestOptions(o), mediation: "conditional", signal: ctl.signal });
      }).then(function (cred) {
        if (cred) submitWith(form, cred);
      }).catch(function (err) {
        if (!ctl.signal.aborted) status(form, message(err), true);
      });
    }).catch(function () {});
  }

  function setUp() {
    document.querySelectorAll("[data-passkey-nojs]").forEach(function (el) { el.hidden = true; });
    document.querySelectorAll("form[data-passkey]").forEach(function (form) {
      if (form.dataset.passkeyReady) return;
      form.dataset.passkeyReady = "1";
      form.hidden = false;
      if (form.getAttribute("data-passkey") === "sign-in") autofill(form);
    });
  }

  document.addEventListener("submit", function (e) {
    var form = e.target;
    if (!form.matches || !form.matches("form[data-passkey]")) return;
    e.preventDefault();
    e.stopImmediatePropagation();
    run(form);
  }, true);

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", setUp);
  else setUp();
  document.addEventListener("htmx:load", setUp);
})();
