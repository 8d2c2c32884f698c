// Live updates of a build page: the build's SSE stream (history first, then live events).
(function () {
  var script = document.currentScript;
  var buildId = script && script.dataset.build;
  if (!buildId || !window.EventSource) return;
  var list = document.getElementById("events");
  var status = document.getElementById("build-status");
  var source = new EventSource("/builds/" + encodeURIComponent(buildId) + "/events/stream");

  function describe(key, event) {
    var d = event.data || {};
    var where = [d.stage, d.target, d.platform].filter(Boolean).join(" ");
    var extra = d.status ? " " + d.status : d.verdict ? " " + d.verdict : "";
    return (event.time || "").slice(11, 23) + "  " + key + (where ? "  " + where : "") + extra;
  }

  source.onmessage = null;
  source.addEventListener("error", function () { if (source.readyState === 2) source.close(); });
  ["build.requested", "stage.started", "stage.finished", "compile.completed", "image.requested.amd64",
   "image.requested.arm64", "image.pushed", "image.failed",
   "manifest.pushed", "scan.completed", "audit.completed", "deploy.completed", "verify.completed",
   "build.cancel.requested", "build.finished"].forEach(function (key) {
    source.addEventListener(key, function (message) {
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
          setTimeout(function () { window.location.reload(); }, 1500);
        }
      }
    });
  });
})();
