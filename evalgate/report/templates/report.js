/* evalgate report: filter, sort and page the canary list. Every canary is already in the HTML
   (readable with JavaScript off); this only hides and reorders them. It never builds markup
   from the data, so an answer's text can never become code. */
(function () {
  "use strict";
  var root = document.documentElement;
  var list = document.getElementById("canary-list");
  var form = document.getElementById("canary-controls");
  if (!list || !form) { root.setAttribute("data-report-ready", "1"); return; }
  var data = {};
  try { data = JSON.parse(document.getElementById("report-data").textContent); } catch (e) { data = {}; }
  var pageSize = data.pageSize || parseInt(list.getAttribute("data-page-size"), 10) || 100;
  var original = Array.prototype.slice.call(list.children);
  var order = original.slice();
  var matches = order;
  var page = 0;
  var fTag = document.getElementById("f-tag");
  var fOut = document.getElementById("f-outcome");
  var fText = document.getElementById("f-text");
  var fSort = document.getElementById("f-sort");
  var prev = document.getElementById("p-prev");
  var next = document.getElementById("p-next");
  var status = document.getElementById("p-status");
  var texts = new WeakMap();

  function has(list, word) { return (" " + list + " ").indexOf(" " + word + " ") >= 0; }
  function text(el) {
    var t = texts.get(el);
    if (t === undefined) { t = el.textContent.toLowerCase(); texts.set(el, t); }
    return t;
  }
  function filter() {
    var tag = fTag.value, out = fOut.value, q = fText.value.trim().toLowerCase();
    matches = order.filter(function (el) {
      if (tag && !has(el.getAttribute("data-tags"), tag)) { return false; }
      if (out && !has(el.getAttribute("data-o"), out)) { return false; }
      return !q || text(el).indexOf(q) >= 0;
    });
    page = 0;
    show();
  }
  function show() {
    var pages = Math.max(1, Math.ceil(matches.length / pageSize));
    if (page > pages - 1) { page = pages - 1; }
    var start = page * pageSize, end = Math.min(start + pageSize, matches.length);
    var visible = new Set(matches.slice(start, end));
    for (var i = 0; i < original.length; i++) {
      var hide = !visible.has(original[i]);
      if (original[i].hidden !== hide) { original[i].hidden = hide; }
    }
    status.textContent = matches.length
      ? (start + 1) + "-" + end + " of " + matches.length + " matching (" + original.length + " canaries)"
      : "no canary matches (" + original.length + " canaries)";
    prev.disabled = page === 0;
    next.disabled = page >= pages - 1;
    list.setAttribute("data-shown", String(end - start));
    list.setAttribute("data-matching", String(matches.length));
  }
  function num(el, name) { return parseFloat(el.getAttribute(name)) || 0; }
  function sort() {
    var by = fSort.value;
    order = original.slice();
    if (by === "key") {
      order.sort(function (a, b) { return a.getAttribute("data-key") < b.getAttribute("data-key") ? -1 : 1; });
    } else if (by === "lat" || by === "cost") {
      var attr = by === "lat" ? "data-lat" : "data-cost";
      order.sort(function (a, b) { return num(b, attr) - num(a, attr); });
    }
    var frag = document.createDocumentFragment();
    order.forEach(function (el) { frag.appendChild(el); });
    list.appendChild(frag);
    filter();
  }
  var timer = 0;
  fTag.addEventListener("change", filter);
  fOut.addEventListener("change", filter);
  fSort.addEventListener("change", sort);
  fText.addEventListener("input", function () { clearTimeout(timer); timer = setTimeout(filter, 150); });
  form.addEventListener("submit", function (e) { e.preventDefault(); filter(); });
  prev.addEventListener("click", function () { page -= 1; show(); list.scrollIntoView(); });
  next.addEventListener("click", function () { page += 1; show(); list.scrollIntoView(); });
  form.hidden = false;
  filter();
  root.setAttribute("data-report-ready", "1");
})();
