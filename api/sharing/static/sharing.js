// A page marked data-refresh="<seconds>" reloads itself while the agent or tool works,
// unless the visitor is typing in it.
(function () {
  var seconds = Number(document.body.dataset.refresh || 0);
  if (!seconds) return;
  setInterval(function () {
    var active = document.activeElement;
    var typing = active && (active.tagName === "TEXTAREA" || active.tagName === "INPUT");
    if (!typing) window.location.reload();
  }, seconds * 1000);
})();
