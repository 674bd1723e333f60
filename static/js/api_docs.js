// isoweb: the interactive API documentation, Swagger UI (from the swagger-ui-dist package, served with our
// static files) reading the schema drf-spectacular serves at the URL the page's container names.
// "Try it out" runs in the user's own session: requests that change something carry the CSRF token, as the
// pages' forms do.
(function () {
  "use strict";

  function cookie(name) {
    var found = document.cookie.split(";").map(function (part) { return part.trim(); })
      .filter(function (part) { return part.indexOf(name + "=") === 0; })[0];
    return found ? decodeURIComponent(found.slice(name.length + 1)) : "";
  }

  document.addEventListener("DOMContentLoaded", function () {
    var root = document.getElementById("swagger-ui");
    if (!root || !window.SwaggerUIBundle) {
      return;
    }
    window.SwaggerUIBundle({
      url: root.getAttribute("data-schema-url"),
      domNode: root,
      // Without deep links an operation's path is plain text, not a link nested inside its expand button.
      deepLinking: false,
      presets: [window.SwaggerUIBundle.presets.apis],
      layout: "BaseLayout",
      requestInterceptor: function (request) {
        var method = (request.method || "GET").toUpperCase();
        if (["GET", "HEAD", "OPTIONS"].indexOf(method) === -1) {
          request.headers["X-CSRFToken"] = cookie("csrftoken");
        }
        return request;
      }
    });
  });
})();
