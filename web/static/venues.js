// The venue code's print page: the print button (no inline script under
// the pages' Content-Security-Policy).
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll("[data-print]").forEach(function (b) {
    b.addEventListener("click", function () { window.print(); });
  });
});
