// pynenc-ray monitor: refresh the parts of a page marked data-refresh="<url>" in
// place (each url returns that part as HTML), and open an invocation from a bar of
// the timeline. No framework, no build step.
(function () {
  "use strict";
  const every = parseFloat(document.body.dataset.refreshSec || "0") * 1000;
  const toggle = document.getElementById("auto-refresh");
  const stamp = document.getElementById("refreshed");

  async function refresh() {
    if (!toggle || toggle.checked) {
      for (const part of document.querySelectorAll("[data-refresh]")) {
        try {
          const reply = await fetch(part.dataset.refresh, { headers: { Accept: "text/html" } });
          if (reply.ok) {
            part.innerHTML = await reply.text();
          }
        } catch (err) {
          // the monitor is unreachable for now: the next round tries again
        }
      }
      if (stamp) {
        stamp.textContent = "updated " + new Date().toLocaleTimeString();
      }
    }
    setTimeout(refresh, every);
  }
  if (every > 0) {
    setTimeout(refresh, every);
  }

  document.addEventListener("click", function (event) {
    const bar = event.target.closest ? event.target.closest("[data-invocation]") : null;
    if (bar) {
      window.location.href = "/invocations/" + encodeURIComponent(bar.dataset.invocation);
    }
  });
})();
