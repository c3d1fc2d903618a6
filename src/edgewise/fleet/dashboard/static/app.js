// Live parts of the dashboard, in plain JS: the event stream (SSE) and polled deployment progress.
(function () {
  "use strict";

  function text(value) { return value === null || value === undefined ? "" : String(value); }

  var live = document.getElementById("live");
  if (live && window.EventSource) {
    var source = new EventSource(live.dataset.stream);
    source.onmessage = function (message) {
      var item = JSON.parse(message.data);
      var line = document.createElement("li");
      var when = new Date((item.ts || Date.now() / 1000) * 1000).toLocaleTimeString();
      line.textContent = when + " " + text(item.kind) + " " + text(item.device_id) + " " +
        text(item.type || item.to || item.health || "") + " " + text(item.label || item.detail || "");
      line.className = "kind-" + text(item.kind);
      live.insertBefore(line, live.firstChild);
      while (live.children.length > 50) { live.removeChild(live.lastChild); }
    };
  }

  function progressText(progress) {
    return Object.keys(progress).sort().map(function (k) { return k + "=" + progress[k]; }).join(" ");
  }

  var table = document.getElementById("deployments");
  if (table) {
    setInterval(function () {
      fetch(table.dataset.poll, { credentials: "same-origin" }).then(function (r) { return r.json(); })
        .then(function (items) {
          items.forEach(function (d) {
            var row = table.querySelector('tr[data-id="' + d.id + '"]');
            if (!row) { return; }
            var status = row.querySelector(".status");
            status.textContent = d.status;
            status.className = "status status-" + d.status;
            row.querySelector(".progress").textContent = progressText(d.progress);
          });
        }).catch(function () {});
    }, 2000);
  }

  var status = document.getElementById("status");
  if (status && status.dataset.poll) {
    var shown = status.textContent;
    setInterval(function () {
      fetch(status.dataset.poll, { credentials: "same-origin" }).then(function (r) { return r.json(); })
        .then(function (d) { if (d.status !== shown) { window.location.reload(); } }).catch(function () {});
    }, 2000);
  }
})();
