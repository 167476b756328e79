(function () {
  "use strict";
  var q = document.getElementById("q");
  var st = document.getElementById("st");
  var shown = document.getElementById("shown");
  var none = document.getElementById("none");
  var rows = Array.prototype.slice.call(document.querySelectorAll("#shops tbody tr"));
  var states = rows.map(function (r) { return r.getAttribute("data-st") || ""; });
  var keys = null;

  function key(r, st) {  // what the filter matches: shop id, name and labels, the ERPs, the status
    return (r.cells[0].textContent + " " + r.cells[2].textContent + " " + st).toLowerCase();
  }

  function filter() {
    var words = q.value.toLowerCase().split(/\s+/).filter(Boolean);
    if (keys === null && words.length) {
      keys = rows.map(function (r, i) { return key(r, states[i]); });
    }
    var want = st.value;
    var n = 0;
    for (var i = 0; i < rows.length; i++) {
      var ok = !want || states[i] === want;
      for (var j = 0; ok && j < words.length; j++) {
        ok = keys[i].indexOf(words[j]) >= 0;
      }
      if (rows[i].hidden === ok) {
        rows[i].hidden = !ok;
      }
      if (ok) {
        n++;
      }
    }
    shown.textContent = String(n);
    none.hidden = n > 0 || rows.length === 0;
  }

  function pick(bar) {
    q.value = bar.getAttribute("data-f");
    st.value = "";
    filter();
    q.scrollIntoView({block: "start"});
  }

  q.addEventListener("input", filter);
  st.addEventListener("change", filter);
  Array.prototype.forEach.call(document.querySelectorAll(".bar[data-f]"), function (bar) {
    bar.addEventListener("click", function () { pick(bar); });
    bar.addEventListener("keydown", function (e) {
      if (e.key === "Enter" || e.key === " ") {
        e.preventDefault();
        pick(bar);
      }
    });
  });
  if (q.value || st.value) {  // a value the browser restored on reload
    filter();
  }
}());
