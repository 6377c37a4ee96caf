// The checkpoint page's script: the scanner field, the photo input and the
// camera check codes without leaving the page. Each posts to the page's
// own /app/checkpoint/check (or /photo), which verifies through the node's
// API and answers the whole page; the answer's result section replaces
// this page's. Without script, the forms post and the answer is the page.
"use strict";

(function () {
  // check posts body to path and shows the answer's result; it resolves to
  // the result's state: green, yellow, red, refused, nocode, or "" when the
  // answer had no result (a log-in page after the session ended).
  async function check(path, body, contentType) {
    const headers = { "Accept": "text/html" };
    if (contentType) headers["Content-Type"] = contentType;
    const res = await fetch(path, { method: "POST", credentials: "same-origin", headers: headers, body: body });
    const html = await res.text();
    const doc = new DOMParser().parseFromString(html, "text/html");
    const got = doc.getElementById("cp-result");
    if (!got) {
      window.location.assign(res.url || "/app/checkpoint/login");
      return "";
    }
    const state = got.dataset.state || "";
    if (state !== "nocode" || !camera.running) {
      const here = document.getElementById("cp-result");
      here.innerHTML = got.innerHTML;
      here.dataset.state = state;
    }
    return state;
  }

  // The scanner field: a handheld scanner types the code and Enter; the
  // field clears and takes the focus again for the next person.
  function scanner() {
    const form = document.getElementById("cp-scan-form");
    const input = document.getElementById("scan");
    if (!form || !input) return;
    form.addEventListener("submit", async function (ev) {
      ev.preventDefault();
      const code = input.value.trim();
      input.value = "";
      try {
        await check(form.action, new URLSearchParams({ code: code }), "application/x-www-form-urlencoded");
      } finally {
        input.focus();
      }
    });
  }

  // The photo input: a chosen photo is checked at once.
  function photo() {
    const form = document.getElementById("cp-photo-form");
    const input = document.getElementById("photo");
    if (!form || !input) return;
    async function send() {
      const file = input.files && input.files[0];
      if (!file) return;
      const type = file.type === "image/png" ? "image/png" : "image/jpeg";
      // A photo that is neither is sent as the form, which the page
      // answers with its refusal.
      if (file.type === "image/png" || file.type === "image/jpeg") {
        await check("/app/checkpoint/check", file, type);
      } else {
        await check(form.action, new FormData(form));
      }
      input.value = "";
    }
    input.addEventListener("change", send);
    form.addEventListener("submit", function (ev) { ev.preventDefault(); send(); });
  }

  // The camera: a frame every ~500 ms is drawn to a canvas and posted as a
  // JPEG until one holds a code; one frame at a time, so a slow node is
  // never sent a queue.
  const camera = { running: false, stream: null, timer: 0, busy: false };

  function cameraMode() {
    const box = document.getElementById("cp-camera");
    if (!box || !navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) return;
    box.hidden = false;
    const start = document.getElementById("cp-camera-start");
    const stop = document.getElementById("cp-camera-stop");
    const video = document.getElementById("cp-video");
    const status = document.getElementById("cp-camera-status");
    const canvas = document.createElement("canvas");

    function halt() {
      camera.running = false;
      clearInterval(camera.timer);
      if (camera.stream) camera.stream.getTracks().forEach(function (t) { t.stop(); });
      camera.stream = null;
      video.hidden = true;
      stop.hidden = true;
      start.hidden = false;
    }

    async function frame() {
      if (!camera.running || camera.busy || video.readyState < 2 || !video.videoWidth) return;
      camera.busy = true;
      try {
        const scale = Math.min(1, 1280 / video.videoWidth);
        canvas.width = Math.round(video.videoWidth * scale);
        canvas.height = Math.round(video.videoHeight * scale);
        canvas.getContext("2d").drawImage(video, 0, 0, canvas.width, canvas.height);
        const blob = await new Promise(function (resolve) { canvas.toBlob(resolve, "image/jpeg", 0.9); });
        if (!blob || !camera.running) return;
        const state = await check("/app/checkpoint/check", blob, "image/jpeg");
        if (state && state !== "nocode") {
          halt();
          status.textContent = "";
          start.focus();
        }
      } catch (e) {
        // A frame that failed (the node busy, the network) is skipped.
      } finally {
        camera.busy = false;
      }
    }

    start.addEventListener("click", async function () {
      try {
        camera.stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: "environment" }, audio: false });
      } catch (e) {
        status.textContent = status.dataset.denied;
        return;
      }
      video.srcObject = camera.stream;
      video.hidden = false;
      await video.play().catch(function () {});
      camera.running = true;
      start.hidden = true;
      stop.hidden = false;
      stop.focus();
      status.textContent = status.dataset.looking;
      camera.timer = setInterval(frame, 500);
    });
    stop.addEventListener("click", function () { halt(); status.textContent = ""; start.focus(); });
  }

  document.addEventListener("DOMContentLoaded", function () {
    scanner();
    photo();
    cameraMode();
  });
})();
