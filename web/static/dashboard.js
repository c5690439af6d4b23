// The dashboard's charts: drawn with the vendored Chart.js from /dashboard/data.json, the same
// figures the tables on the page show. No request leaves this host.
(function () {
  "use strict";
  var COLORS = ["#2563eb", "#16a34a", "#f59e0b", "#dc2626", "#7c3aed", "#0891b2", "#db2777", "#65a30d",
                "#ea580c", "#475569", "#0d9488", "#9333ea"];

  function faded(hex, alpha) {
    var value = parseInt(hex.slice(1), 16);
    return "rgba(" + [(value >> 16) & 255, (value >> 8) & 255, value & 255, alpha].join(",") + ")";
  }

  function datasets(chart) {
    var current = 0, previous = 0;
    return chart.datasets.map(function (dataset) {
      // A previous period's series takes the colour of the current series it stands beside.
      var isPrevious = dataset.kind === "previous";
      var color = COLORS[(isPrevious ? previous++ : current++) % COLORS.length];
      var line = chart.type === "line";
      return {
        label: dataset.label,
        data: dataset.data.slice(),
        borderColor: isPrevious ? faded(color, 0.6) : color,
        backgroundColor: isPrevious ? faded(color, 0.3) : (line ? color : faded(color, 0.85)),
        borderDash: isPrevious && line ? [6, 4] : [],
        borderWidth: line ? 2 : 1,
        // Small points on a long series, but never none: a lone sample between gaps must show.
        pointRadius: line && chart.labels.length > 40 ? 1.5 : 2,
        spanGaps: false,
        tension: 0.2
      };
    });
  }

  function draw(section) {
    var canvas = document.getElementById("chart-" + section.key);
    if (!canvas) { return; }
    var chart = section.chart;
    var horizontal = Boolean(chart.horizontal), stacked = Boolean(chart.stacked);
    new window.Chart(canvas, {
      type: chart.type,
      data: { labels: chart.labels.slice(), datasets: datasets(chart) },
      options: {
        animation: false,
        responsive: true,
        maintainAspectRatio: false,
        indexAxis: horizontal ? "y" : "x",
        interaction: { mode: "index", intersect: false },
        scales: {
          x: { stacked: stacked, beginAtZero: true, ticks: { precision: 0, autoSkip: true, maxRotation: 0 } },
          y: { stacked: stacked, beginAtZero: true, ticks: { precision: 0, autoSkip: true } }
        },
        plugins: { legend: { position: "bottom", labels: { boxWidth: 12 } } }
      }
    });
  }

  function autoSubmit() {
    var form = document.querySelector("form.filter");
    ["profile", "period"].forEach(function (id) {
      var select = document.getElementById(id);
      if (select && form) { select.addEventListener("change", function () { form.submit(); }); }
    });
  }

  function load() {
    autoSubmit();
    // location.origin, not a relative URL: a page opened as http://user:password@host/ would
    // otherwise make a URL with credentials in it, which fetch refuses.
    var url = new URL(document.body.dataset.dataUrl, window.location.origin);
    fetch(url.toString(), { credentials: "same-origin", cache: "no-store" })
      .then(function (response) {
        if (!response.ok) { throw new Error("data.json answered " + response.status); }
        return response.json();
      })
      .then(function (data) {
        data.sections.forEach(draw);
        document.body.dataset.ready = "yes";
      })
      .catch(function (error) {
        document.getElementById("load-error").hidden = false;
        document.body.dataset.ready = "failed";
        console.error("dashboard: " + error.message);
      });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", load);
  } else {
    load();
  }
}());
