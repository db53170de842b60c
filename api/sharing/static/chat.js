// Baton's chat widget. On any site:
//   <script src="https://baton.example.com/embed/chat.js"
//           data-share="https://baton.example.com/share/bts_..."  (a share link, or its token)
//           data-color="#0a7d53" data-prompts="What can you do?|Track my order"
//           data-hide-steps="true" defer></script>
// adds a chat bubble that opens the link's embed page in an iframe.
(function () {
  var script = document.currentScript;
  if (!script) return;
  var origin = new URL(script.src).origin;
  var share = script.dataset.share || "";
  var token = share.split("/").filter(Boolean).pop() || "";
  if (!token) return;
  var color = /^#[0-9a-fA-F]{6}$/.test(script.dataset.color || "") ? script.dataset.color : "#2f5bd3";
  var query = new URLSearchParams();
  query.set("color", color);
  if (script.dataset.prompts) query.set("prompts", script.dataset.prompts);
  if (/^(1|true|yes)$/.test(script.dataset.hideSteps || "")) query.set("hide_steps", "1");
  var src = origin + "/embed/" + encodeURIComponent(token) + "?" + query.toString();

  var button = document.createElement("button");
  button.type = "button";
  button.className = "baton-chat-bubble";
  button.setAttribute("aria-label", "Open chat");
  button.setAttribute("aria-expanded", "false");
  button.textContent = "💬";
  button.style.cssText =
    "position:fixed;right:20px;bottom:20px;width:56px;height:56px;border-radius:50%;" +
    "border:0;font-size:24px;cursor:pointer;color:#fff;z-index:2147483646;" +
    "box-shadow:0 2px 10px rgba(0,0,0,.25);background:" + color;

  var frame = null;
  button.addEventListener("click", function () {
    if (!frame) {
      frame = document.createElement("iframe");
      frame.src = src;
      frame.title = "Chat";
      frame.className = "baton-chat-frame";
      frame.style.cssText =
        "position:fixed;right:20px;bottom:88px;width:380px;max-width:calc(100vw - 40px);" +
        "height:560px;max-height:calc(100vh - 120px);border:1px solid #ddd;border-radius:12px;" +
        "background:#fff;z-index:2147483647;box-shadow:0 4px 24px rgba(0,0,0,.2)";
      document.body.appendChild(frame);
      button.setAttribute("aria-expanded", "true");
      button.setAttribute("aria-label", "Close chat");
      return;
    }
    var open = frame.style.display !== "none";
    frame.style.display = open ? "none" : "block";
    button.setAttribute("aria-expanded", open ? "false" : "true");
    button.setAttribute("aria-label", open ? "Open chat" : "Close chat");
  });
  function mount() { document.body.appendChild(button); }
  if (document.body) mount(); else document.addEventListener("DOMContentLoaded", mount);
})();
