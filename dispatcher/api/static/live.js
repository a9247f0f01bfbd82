// Keeps the page's live part current: refetch it every few seconds (?fragment=1) and swap
// it in, unless the person is working in it (focus inside, or a field they changed).
(function () {
  "use strict";
  var EVERY_MS = 3000;
  var region = document.querySelector("[data-live]");
  if (!region || !window.fetch) { return; }
  var busy = false;
  function working() {
    var active = document.activeElement;
    if (active && active !== document.body && region.contains(active)) { return true; }
    var inputs = region.querySelectorAll("input:not([type=hidden]), textarea");
    for (var i = 0; i < inputs.length; i++) {
      if (inputs[i].value !== inputs[i].defaultValue) { return true; }
    }
    return false;
  }
  function refresh() {
    if (busy || document.hidden || working()) { return; }
    var url = new URL(window.location.href);
    url.searchParams.delete("notice");
    url.searchParams.set("fragment", "1");
    busy = true;
    fetch(url.toString(), { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (answer) { return answer.ok ? answer.text() : null; })
      .then(function (html) {
        if (html !== null && !working() && html.trim() !== region.innerHTML.trim()) {
          region.innerHTML = html;
        }
      })
      .catch(function () { /* the next tick tries again */ })
      .then(function () { busy = false; });
  }
  window.setInterval(refresh, EVERY_MS);
}());
