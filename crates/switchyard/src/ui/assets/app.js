// Switchyard dashboard: the theme, live refresh, copy buttons, confirmations
// and the playground. No framework; nothing loaded from elsewhere.
(function () {
  "use strict";
  var THEME = "switchyard-theme";
  var stored = null;
  try { stored = localStorage.getItem(THEME); } catch (e) { /* storage off */ }
  var dark = window.matchMedia && window.matchMedia("(prefers-color-scheme: dark)").matches;
  document.documentElement.setAttribute("data-theme", stored || (dark ? "dark" : "light"));

  function main() { return document.getElementById("page"); }

  function setUp(root) {
    root.querySelectorAll("[data-copy]").forEach(function (button) {
      button.addEventListener("click", function () {
        var source = document.querySelector(button.getAttribute("data-copy"));
        if (!source) { return; }
        var text = source.textContent;
        var done = function () { button.textContent = "Copied"; };
        if (navigator.clipboard && window.isSecureContext) {
          navigator.clipboard.writeText(text).then(done, function () { select(source); });
        } else { select(source); done(); }
      });
    });
    root.querySelectorAll("form[data-confirm]").forEach(function (form) {
      form.addEventListener("submit", function (event) {
        if (!window.confirm(form.getAttribute("data-confirm"))) { event.preventDefault(); }
      });
    });
  }

  function select(node) {
    var range = document.createRange();
    range.selectNodeContents(node);
    var selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
    try { document.execCommand("copy"); } catch (e) { /* the text stays selected */ }
  }

  // A page with data-live="N" fetches itself every N seconds while visible
  // and swaps its content in (forms being typed in are left alone).
  function live(page) {
    var seconds = parseInt(page.getAttribute("data-live") || "0", 10);
    if (!seconds) { return; }
    setInterval(function () {
      if (document.hidden) { return; }
      var active = document.activeElement;
      if (active && page.contains(active) && /INPUT|SELECT|TEXTAREA/.test(active.tagName)) { return; }
      fetch(window.location.href, { credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.text() : null; })
        .then(function (text) {
          if (!text) { return; }
          var next = new DOMParser().parseFromString(text, "text/html").getElementById("page");
          if (!next) { return; }
          // Signed out meanwhile (the session expired): show the sign-in page.
          if (next.getAttribute("data-page") !== page.getAttribute("data-page")) {
            window.location.reload();
            return;
          }
          page.innerHTML = next.innerHTML;
          setUp(page);
        })
        .catch(function () { /* the next tick tries again */ });
    }, seconds * 1000);
  }

  function playground(page) {
    var form = document.getElementById("playground");
    if (!form) { return; }
    var prefix = page.getAttribute("data-prefix");
    var csrf = page.getAttribute("data-csrf");
    var out = function (id) { return document.getElementById(id); };
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var messages = [];
      var system = out("system").value.trim();
      if (system) { messages.push({ role: "system", content: system }); }
      messages.push({ role: "user", content: out("prompt").value });
      var body = {
        model: out("model").value, messages: messages, stream: true,
        stream_options: { include_usage: true }
      };
      var maxTokens = parseInt(out("max_tokens").value, 10);
      if (maxTokens > 0) { body.max_tokens = maxTokens; }
      ["answer", "route", "tokens", "cost", "served", "error"].forEach(function (id) { out(id).textContent = ""; });
      out("status").textContent = "sending";
      out("send").disabled = true;
      var started = performance.now();
      var first = null;
      fetch(prefix + "/playground/chat", {
        method: "POST", credentials: "same-origin",
        headers: { "content-type": "application/json", "x-csrf-token": csrf },
        body: JSON.stringify(body)
      }).then(function (response) {
        var id = response.headers.get("x-request-id");
        out("served").textContent = (response.headers.get("x-switchyard-provider") || "–") + " / " +
          (response.headers.get("x-switchyard-model") || "–");
        out("route").textContent = response.headers.get("x-switchyard-route") || "–";
        if (!response.ok) {
          return response.text().then(function (text) {
            var message = text;
            try { message = JSON.parse(text).error.message; } catch (e) { /* not JSON */ }
            throw new Error(response.status + ": " + message);
          });
        }
        out("status").textContent = "streaming";
        var reader = response.body.getReader();
        var decoder = new TextDecoder();
        var buffer = "";
        var usage = null;
        function pump() {
          return reader.read().then(function (chunk) {
            if (chunk.done) { return; }
            buffer += decoder.decode(chunk.value, { stream: true });
            var events = buffer.split("\n\n");
            buffer = events.pop();
            events.forEach(function (event) {
              event.split("\n").forEach(function (line) {
                if (line.indexOf("data:") !== 0) { return; }
                var data = line.slice(5).trim();
                if (data === "[DONE]") { return; }
                var parsed = JSON.parse(data);
                if (parsed.error) { throw new Error(parsed.error.message || "the stream broke off"); }
                var choice = parsed.choices && parsed.choices[0];
                if (choice && choice.delta && choice.delta.content) {
                  if (first === null) { first = performance.now() - started; }
                  out("answer").textContent += choice.delta.content;
                }
                if (parsed.usage) { usage = parsed.usage; }
              });
            });
            return pump();
          });
        }
        return pump().then(function () {
          if (usage) {
            out("tokens").textContent = usage.prompt_tokens + " in · " + usage.completion_tokens + " out";
          }
          out("timing").textContent = (first === null ? "–" : Math.round(first) + " ms to first token · ") +
            Math.round(performance.now() - started) + " ms in all";
          out("status").textContent = "done";
          if (id) { cost(prefix, id, 0); }
        });
      }).catch(function (error) {
        out("error").textContent = error.message;
        out("status").textContent = "failed";
      }).then(function () { out("send").disabled = false; });
    });

    // The usage log is written in batches: its record arrives within a few seconds.
    function cost(prefix, id, tries) {
      fetch(prefix + "/requests/by-request-id/" + encodeURIComponent(id), { credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (record) {
          if (record && record.found) {
            out("cost").textContent = record.cost;
            out("tokens").textContent = record.tokens;
            var link = document.createElement("a");
            link.href = record.href;
            link.textContent = "details";
            out("cost").appendChild(document.createTextNode(" · "));
            out("cost").appendChild(link);
          } else if (tries < 20) {
            setTimeout(function () { cost(prefix, id, tries + 1); }, 500);
          } else {
            out("cost").textContent = "not in the usage log yet";
          }
        });
    }
  }

  document.addEventListener("DOMContentLoaded", function () {
    var toggle = document.getElementById("theme-toggle");
    if (toggle) {
      toggle.addEventListener("click", function () {
        var next = document.documentElement.getAttribute("data-theme") === "dark" ? "light" : "dark";
        document.documentElement.setAttribute("data-theme", next);
        try { localStorage.setItem(THEME, next); } catch (e) { /* storage off */ }
      });
    }
    var page = main();
    if (!page) { return; }
    setUp(page);
    live(page);
    playground(page);
  });
})();
