// hcx pages: the little script they need. Everything works without it
// except passkeys (WebAuthn is a browser API) and the code's refresh.
"use strict";

// postJSON sends a JSON body to the node's API on this origin and returns
// the decoded answer; a refusal throws an Error with the API's message.
async function postJSON(path, body) {
  const res = await fetch(path, {
    method: "POST",
    credentials: "same-origin",
    headers: { "Content-Type": "application/json", "Accept": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (e) { data = null; }
  if (!res.ok) {
    const msg = data && data.error && data.error.message ? data.error.message : res.status + " " + res.statusText;
    throw new Error(msg);
  }
  return data;
}

function passkeysSupported() {
  return typeof window.PublicKeyCredential === "function" &&
    typeof PublicKeyCredential.parseCreationOptionsFromJSON === "function" &&
    typeof PublicKeyCredential.parseRequestOptionsFromJSON === "function";
}

// showStatus shows a passkey failure next to its button: the page's
// translated sentence, and the reason (the API's or the browser's).
function showStatus(button, text, reason) {
  const box = button.parentElement.querySelector("[data-passkey-status]");
  if (!box) return;
  box.textContent = reason ? text + " (" + reason + ")" : text;
  box.hidden = false;
}

// passkeyCeremony runs one WebAuthn ceremony against the node's API:
// begin (the server's options and ceremony id), the browser's
// authenticator, finish; then goes to the button's data-next.
async function passkeyCeremony(button, kind, beginBody) {
  if (!passkeysSupported()) { showStatus(button, button.dataset.unsupported); return; }
  button.disabled = true;
  try {
    const base = "/v1/auth/passkeys/" + kind;
    const begin = await postJSON(base + "/begin", beginBody);
    const cred = kind === "login"
      ? await navigator.credentials.get({ publicKey: PublicKeyCredential.parseRequestOptionsFromJSON(begin.publicKey) })
      : await navigator.credentials.create({ publicKey: PublicKeyCredential.parseCreationOptionsFromJSON(begin.publicKey) });
    await postJSON(base + "/finish", { ceremony: begin.ceremony, credential: cred.toJSON() });
    window.location.assign(button.dataset.next || "/app/");
  } catch (e) {
    showStatus(button, button.dataset.error, e && e.message);
    button.disabled = false;
  }
}

document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll("[data-passkey-login]").forEach(function (b) {
    b.addEventListener("click", function () { passkeyCeremony(b, "login"); });
  });
  document.querySelectorAll("[data-passkey-register]").forEach(function (b) {
    b.addEventListener("click", function () {
      const input = b.dataset.nameInput ? document.getElementById(b.dataset.nameInput) : null;
      passkeyCeremony(b, "register", { name: input ? input.value.trim() : "" });
    });
  });
});
