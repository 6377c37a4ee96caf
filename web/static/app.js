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

// refreshCode fetches a new QR image of the code every data-every seconds
// (a dynamic code lives 60 s; a screenshot goes stale) and when the page
// becomes visible again, as a blob so the browser never caches it. A changed colour reloads the page, which then
// shows the new reasons.
function refreshCode(img) {
  const every = Math.max(10, parseInt(img.dataset.every, 10) || 30) * 1000;
  const shown = document.querySelector("[data-code-colour]");
  const label = document.querySelector("[data-code-updated]");
  let last = null;
  async function once() {
    try {
      const res = await fetch(img.dataset.refresh, { credentials: "same-origin", cache: "no-store" });
      if (res.status === 401) { window.location.assign("/app/login?done=login_needed"); return; }
      if (!res.ok) return;
      const colour = res.headers.get("X-HCX-Colour");
      if (shown && colour && colour !== shown.dataset.codeColour) { window.location.reload(); return; }
      const url = URL.createObjectURL(await res.blob());
      img.src = url;
      if (last) URL.revokeObjectURL(last);
      last = url;
      img.dataset.refreshed = String((parseInt(img.dataset.refreshed, 10) || 0) + 1);
      if (label) label.textContent = img.dataset.updatedLabel + " " + new Date().toLocaleTimeString(document.documentElement.lang);
    } catch (e) {
      // Offline for a moment: keep the image and try at the next tick.
    }
  }
  setInterval(once, every);
  // Back to the page after a while (the phone was in a pocket): renew at
  // once rather than show a stale code until the next tick.
  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "visible") once();
  });
}

document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll("img[data-refresh]").forEach(refreshCode);
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
