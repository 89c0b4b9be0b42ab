// Keeps the live parts of a page current. A page that has them names its event stream in
// <body data-live="/path">; the server sends Server-Sent Events whose data is the id of an
// element, a newline, and the element's new HTML, which replaces it. Without JavaScript the
// page still reads; it is simply as fresh as its last load.
(function () {
  "use strict";
  var body = document.body;
  var source = body.getAttribute("data-live");
  if (!source || !window.EventSource) {
    return;
  }
  var stream = new EventSource(source);
  stream.onopen = function () {
    body.setAttribute("data-live-state", "connected");
  };
  stream.onerror = function () {
    // EventSource reconnects by itself (the server's retry: field sets the pause).
    body.setAttribute("data-live-state", "reconnecting");
  };
  stream.onmessage = function (event) {
    var split = event.data.indexOf("\n");
    if (split < 0) {
      return;
    }
    var target = document.getElementById(event.data.slice(0, split));
    if (target) {
      target.outerHTML = event.data.slice(split + 1);
    }
  };
  window.addEventListener("pagehide", function () {
    stream.close();
  });
})();
