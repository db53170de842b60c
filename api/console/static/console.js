// A task page that is not final streams its events (#live names the console's stream): an
// answer's text arrives piece by piece, tool calls fold open with their input and output,
// and when the task comes to wait for a decision or ends, the page is read again so its
// forms match. No build step, no dependency: plain DOM calls.
(function () {
  "use strict";
  var live = document.getElementById("live");
  var list = document.getElementById("messages");
  if (!live || !list || !window.EventSource) return;
  // The statuses whose page differs in its forms: approve and reject, or no reply.
  var RELOAD = {
    "waiting-approval": true, completed: true, failed: true, cancelled: true,
    "timed-out": true, "execution-limit-reached": true
  };
  var streaming = null;

  function element(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function bubble(role, heading) {
    var item = element("li", "message " + role);
    item.appendChild(element("h3", "role", heading || role));
    list.appendChild(item);
    return item;
  }

  function content(item) {
    var found = item.querySelector(".content");
    if (!found) found = item.appendChild(element("div", "content", ""));
    return found;
  }

  function toolCall(item, call) {
    var fold = element("details", "tool-call");
    fold.dataset.call = call.id;
    fold.open = true;
    var summary = element("summary", "", "Tool call ");
    summary.appendChild(element("code", "", call.name));
    fold.appendChild(summary);
    fold.appendChild(element("p", "", "Input"));
    fold.appendChild(element("pre", "", JSON.stringify(call.arguments, null, 2)));
    fold.appendChild(element("p", "", "Output"));
    fold.appendChild(element("pre", "output", ""));
    item.appendChild(fold);
  }

  function output(callId, text) {
    var folds = list.querySelectorAll("details.tool-call");
    for (var i = 0; i < folds.length; i++) {
      if (folds[i].dataset.call === callId) {
        folds[i].querySelector(".output").textContent = text;
        return true;
      }
    }
    return false;
  }

  var handlers = {
    "message.delta": function (data) {
      if (!streaming) streaming = bubble("assistant streaming", "assistant");
      content(streaming).textContent += data.text;
    },
    "message.completed": function (data) {
      if (data.role === "tool" && output(data.tool_call_id, data.content || "")) return;
      var item = data.role === "assistant" && streaming ? streaming : bubble(data.role);
      streaming = null;
      item.className = "message " + data.role;
      if (data.content) content(item).textContent = data.content;
      (data.tool_calls || []).forEach(function (call) { toolCall(item, call); });
    },
    "tool.run.completed": function (data) { output(data.call_id, data.output || ""); },
    "tool.run.failed": function (data) { output(data.call_id, "Error: " + data.error); },
    "task.status": function (data) {
      var shown = document.getElementById("status");
      if (shown) shown.textContent = data.status;
      live.textContent = data.status === "running" ? "The agent is working." : "";
      if (!RELOAD[data.status]) return;
      source.close();
      window.location.reload();
    }
  };

  var source = new EventSource(live.dataset.events);
  Object.keys(handlers).forEach(function (type) {
    source.addEventListener(type, function (event) {
      handlers[type](JSON.parse(event.data).data);
    });
  });
  source.onerror = function () {
    // A refused stream (signed out, say) is not retried by the browser: say so, once.
    if (source.readyState === EventSource.CLOSED) {
      live.textContent = "Live updates stopped; reload the page to see what is new.";
    }
  };
})();
