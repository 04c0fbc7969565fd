// The console's only script (no inline scripts: the pages' Content-Security-Policy forbids them).
// Draws the ECharts charts from the data-* attributes the server rendered and redraws them
// after each htmx refresh; nothing here talks to anything but the gateway itself.
(function () {
  "use strict";
  var GRADE_COLORS = ["#2f855a", "#48bb78", "#d69e2e", "#dd6b20", "#c53030"];
  var charts = {};

  function gradeOption(values) {
    return {
      animation: false,
      grid: { left: 40, right: 16, top: 16, bottom: 30 },
      tooltip: { trigger: "axis" },
      xAxis: { type: "category", data: values.map(function (v) { return v[0]; }) },
      yAxis: { type: "value", minInterval: 1 },
      series: [{ type: "bar", name: "评价数", data: values.map(function (v, i) {
        return { value: v[1], itemStyle: { color: GRADE_COLORS[i % GRADE_COLORS.length] } };
      }), label: { show: true, position: "top" } }]
    };
  }

  function readJSON(el, attr) {
    try { return JSON.parse(el.getAttribute(attr)); } catch (e) { return null; }
  }

  function draw() {
    if (typeof window.echarts === "undefined") { return; }
    var data = document.getElementById("grade-data");
    var el = document.getElementById("grade-chart");
    if (data && el) {
      var values = readJSON(data, "data-values");
      if (values) {
        var chart = charts[el.id] || (charts[el.id] = window.echarts.init(el, null, { renderer: "canvas", locale: "ZH" }));
        chart.setOption(gradeOption(values));
        el.setAttribute("data-drawn", JSON.stringify(values.map(function (v) { return v[1]; })));
      }
    }
    document.querySelectorAll("[data-chart-option]").forEach(function (box) {
      var opt = readJSON(box, "data-chart-option");
      if (!opt) { return; }
      var c = charts[box.id] || (charts[box.id] = window.echarts.init(box, null, { renderer: "canvas", locale: "ZH" }));
      c.setOption(opt, true);
      box.setAttribute("data-drawn", "1");
    });
  }

  // The period picker shows only the field of the chosen kind (without script: all of them).
  function periodPicker() {
    var kind = document.getElementById("p-kind");
    if (!kind) { return; }
    function show() {
      document.querySelectorAll("[data-period]").forEach(function (el) {
        el.hidden = el.getAttribute("data-period") !== kind.value;
      });
    }
    kind.addEventListener("change", show);
    show();
  }

  document.addEventListener("DOMContentLoaded", periodPicker);
  document.addEventListener("DOMContentLoaded", draw);
  document.addEventListener("htmx:afterSwap", draw);
  window.addEventListener("resize", function () {
    Object.keys(charts).forEach(function (k) { charts[k].resize(); });
  });
})();
