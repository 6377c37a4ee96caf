// Operator pages: a feed upload shows its progress. The form works without
// this script (a plain multipart POST); with it the same POST goes through
// XMLHttpRequest, whose upload events drive the progress bar, and the
// server's answer (the page with its per-line result table) replaces this
// page's main part.
"use strict";

function bindFeedUpload() {
  const form = document.querySelector("form[data-feed-upload]");
  if (!form || typeof FormData !== "function") return;
  form.addEventListener("submit", function (ev) {
    ev.preventDefault();
    const box = form.querySelector("[data-feed-progress]");
    const bar = box.querySelector("progress");
    const text = box.querySelector("[data-feed-progress-text]");
    const status = form.querySelector("[data-feed-status]");
    const button = form.querySelector("button[type=submit]");
    box.hidden = false;
    status.hidden = true;
    button.disabled = true;
    bar.value = 0;
    const xhr = new XMLHttpRequest();
    xhr.open("POST", form.action);
    xhr.setRequestHeader("Accept", "text/html");
    xhr.upload.addEventListener("progress", function (e) {
      if (!e.lengthComputable) return;
      const pct = Math.round(100 * e.loaded / e.total);
      bar.value = pct;
      text.textContent = pct + "% (" + Math.round(e.loaded / 1024) + " / " + Math.round(e.total / 1024) + " KiB)";
    });
    xhr.addEventListener("load", function () {
      // The answer is the page again (200 with the result, or 4xx with the
      // refusal next to its field): show its main part.
      const doc = new DOMParser().parseFromString(xhr.responseText, "text/html");
      const main = doc.getElementById("main");
      if (!main) { fail(xhr.status + " " + xhr.statusText); return; }
      document.getElementById("main").replaceWith(document.adoptNode(main));
      const result = document.getElementById("feed-result");
      if (result) result.scrollIntoView();
      // The new form uploads the same way.
      bindFeedUpload();
    });
    xhr.addEventListener("error", function () { fail(""); });
    function fail(reason) {
      status.textContent = reason ? status.dataset.error + " (" + reason + ")" : status.dataset.error;
      status.hidden = false;
      button.disabled = false;
    }
    xhr.send(new FormData(form));
  });
}

document.addEventListener("DOMContentLoaded", bindFeedUpload);
