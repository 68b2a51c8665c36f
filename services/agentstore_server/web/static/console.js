// The live tail of an agent's logs page: asks the console for logs at or after the
// newest one shown, once a second, and puts the new rows on top. Nothing else runs
// in the browser; every other page is plain HTML.
(function () {
  const state = document.getElementById("tail-state");
  const toggle = document.getElementById("tail");
  const body = document.querySelector("#logs tbody");
  if (!state || !toggle || !body) return;
  const seen = new Set();
  let newest = state.dataset.newest;
  let busy = false;

  async function poll() {
    if (!toggle.checked || busy) return;
    busy = true;
    try {
      const url = new URL(state.dataset.source, window.location.href);
      url.searchParams.set("since", newest);
      const reply = await fetch(url, { headers: { Accept: "application/json" } });
      if (!reply.ok) { state.textContent = "tail paused: " + reply.status; return; }
      const items = (await reply.json()).items;
      const empty = body.querySelector("tr.empty");
      for (const item of items.slice().reverse()) {   // oldest first, each on top
        if (seen.has(item.id) || document.getElementById("log-" + item.id)) continue;
        seen.add(item.id);
        if (empty) empty.remove();
        const row = document.createElement("tr");
        row.id = "log-" + item.id;
        row.className = "fresh";
        row.innerHTML = item.html;
        body.prepend(row);
      }
      if (items.length) newest = items[0].ts;
      state.textContent = "updated " + new Date().toLocaleTimeString();
    } catch (err) {
      state.textContent = "tail paused: " + err;
    } finally {
      busy = false;
    }
  }
  setInterval(poll, 1000);
})();
