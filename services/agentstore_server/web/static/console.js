// The live tail of an agent's logs page: a server-sent event stream from the console,
// which sends the logs stored after the newest one shown each time the logs service says
// it stored some (no polling). New rows go on top. Unticking "live tail" closes the stream;
// ticking it opens a new one from the newest row shown. Nothing else runs in the browser;
// every other page is plain HTML.
(function () {
  const state = document.getElementById("tail-state");
  const toggle = document.getElementById("tail");
  const body = document.querySelector("#logs tbody");
  if (!state || !toggle || !body) return;
  let newest = state.dataset.newest;
  let stream = null;

  function show(items) {
    const empty = body.querySelector("tr.empty");
    for (const item of items.slice().reverse()) {   // oldest first, each on top
      if (document.getElementById("log-" + item.id)) continue;
      if (empty) empty.remove();
      const row = document.createElement("tr");
      row.id = "log-" + item.id;
      row.className = "fresh";
      row.innerHTML = item.html;
      body.prepend(row);
    }
  }

  function open() {
    const url = new URL(state.dataset.source, window.location.href);
    url.searchParams.set("from", newest);   // the newest row shown: ts|id
    stream = new EventSource(url);
    stream.addEventListener("open", () => { state.textContent = "connected"; });
    stream.addEventListener("logs", (event) => {
      show(JSON.parse(event.data).items);
      newest = event.lastEventId;              // the newest row sent, to reopen from
      state.textContent = "live, updated " + new Date().toLocaleTimeString();
    });
    // The browser reconnects by itself (Last-Event-ID: the newest row it was sent).
    stream.addEventListener("error", () => { state.textContent = "reconnecting ..."; });
  }

  function close() {
    if (stream) stream.close();
    stream = null;
    state.textContent = "paused";
  }

  toggle.addEventListener("change", () => (toggle.checked ? open() : close()));
  window.addEventListener("pagehide", close);
  if (toggle.checked) open();
})();
