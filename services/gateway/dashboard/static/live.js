// Live updates of a build page: the build's SSE stream (history first, then live events), and
// the live log lines of its running stages (`event: log`) appended to the log pane.
(function () {
  var script = document.currentScript;
  var buildId = script && script.dataset.build;
  if (!buildId || !window.EventSource) return;
  var list = document.getElementById("events");
  var status = document.getElementById("build-status");
  var pane = document.getElementById("log");
  var MAX_LOG_LINES = 5000;  // the pane keeps the newest; the browser must not grow without bound
  var logChunks = [], logLines = 0;
  var source = null;

  function appendLog(batch) {
    var d = batch.data || {};
    var where = [d.stage, d.target, d.platform].filter(Boolean).join("/");
    var atBottom = pane.scrollTop + pane.clientHeight >= pane.scrollHeight - 4;
    var lines = (d.lines || []).map(function (line) { return "[" + where + "] " + line; });
    var chunk = document.createTextNode(lines.join("\n") + "\n");
    pane.appendChild(chunk);
    logChunks.push([chunk, lines.length]);
    logLines += lines.length;
    while (logLines > MAX_LOG_LINES && logChunks.length > 1) {
      var oldest = logChunks.shift();
      pane.removeChild(oldest[0]);
      logLines -= oldest[1];
    }
    if (atBottom) pane.scrollTop = pane.scrollHeight;
  }


  // Live lines are not stored: keep the ones seen here across the reload at the end of the build,
  // above the stored log the reloaded page shows.
  var savedKey = "kiln-live-log-" + buildId, saved = null;
  try { saved = window.sessionStorage.getItem(savedKey); window.sessionStorage.removeItem(savedKey); } catch (e) {}
  if (pane && saved) {
    var stored = pane.textContent;
    pane.textContent = saved + (stored ? "--- stored log (the tails the stages reported) ---\n" + stored : "");
  }
  function keepLiveLog() {
    var live = logChunks.map(function (c) { return c[0].nodeValue; }).join("");
    try { if (live) window.sessionStorage.setItem(savedKey, live); } catch (e) {}
  }

  function describe(key, event) {
    var d = event.data || {};
    var where = [d.stage, d.target, d.platform].filter(Boolean).join(" ");
    var extra = d.status ? " " + d.status : d.verdict ? " " + d.verdict : "";
    return (event.time || "").slice(11, 23) + "  " + key + (where ? "  " + where : "") + extra;
  }

  // The routing keys come from the stage catalogue (shared.stages via /api/catalogue), so a new
  // stage's events show without touching this file. The stream opens only once the listeners are
  // in place: its history arrives first and would otherwise be dropped.
  fetch("/api/catalogue", { credentials: "same-origin" })
    .then(function (response) { if (!response.ok) throw new Error(response.status); return response.json(); })
    .then(function (catalogue) { listen(catalogue.routing_keys || []); })
    .catch(function () { listen([]); });

  function listen(keys) {
    source = new EventSource("/builds/" + encodeURIComponent(buildId) + "/events/stream");
    if (pane) source.addEventListener("log", function (message) { appendLog(JSON.parse(message.data)); });
    source.addEventListener("error", function () { if (source.readyState === 2) source.close(); });
    keys.forEach(function (key) { source.addEventListener(key, function (message) { show(key, message); }); });
  }

  function show(key, message) {
    var event = JSON.parse(message.data);
    var item = document.createElement("li");
    item.textContent = describe(key, event);
    list.appendChild(item);
    list.scrollTop = list.scrollHeight;
    if (key === "stage.started" && status.textContent === "queued") { status.textContent = "running"; status.className = "badge running"; }
    if (key === "build.finished") {
      source.close();
      var finalStatus = (event.data || {}).status;
      if (finalStatus && status.textContent !== finalStatus) {
        // The reporter writes the final rows just after this event; reload to show them.
        setTimeout(function () { keepLiveLog(); window.location.reload(); }, 1500);
      }
    }
  }
})();
