// instructrl labeling page: order the response cards (drag, arrow keys or the arrow buttons), mark
// ties, and submit the ranking as JSON: [best, ..., worst] response indices, a tie being a list.
// The page's text is rendered (escaped) by the server; this script never builds HTML from text.
(function () {
  "use strict";
  var list = document.getElementById("cards");
  if (!list) return;
  var form = document.getElementById("rank-form");
  var input = document.getElementById("ranking-input");
  var clientError = document.getElementById("client-error");

  function cards() { return Array.prototype.slice.call(list.querySelectorAll(":scope > .card")); }

  function ranking() {
    var groups = [];
    cards().forEach(function (c, pos) {
      var i = parseInt(c.getAttribute("data-index"), 10);
      var tie = c.querySelector(".tie");
      if (pos > 0 && tie.checked) groups[groups.length - 1].push(i);
      else groups.push([i]);
    });
    return groups.map(function (g) { return g.length === 1 ? g[0] : g; });
  }

  function refresh() {
    var place = 0;
    cards().forEach(function (c, pos) {
      var tie = c.querySelector(".tie");
      if (pos === 0) { tie.checked = false; tie.disabled = true; } else { tie.disabled = false; }
      var tied = pos > 0 && tie.checked;
      if (!tied) place += 1;
      c.querySelector(".place").textContent = "#" + place + (tied ? " (tie)" : "");
      c.classList.toggle("tied", tied);
      c.querySelector(".move.up").disabled = pos === 0;
      c.querySelector(".move.down").disabled = pos === cards().length - 1;
    });
    input.value = JSON.stringify(ranking());
  }

  function move(card, dir) {
    if (dir < 0 && card.previousElementSibling) list.insertBefore(card, card.previousElementSibling);
    else if (dir > 0 && card.nextElementSibling) list.insertBefore(card.nextElementSibling, card);
    refresh();
    card.focus();
  }

  list.addEventListener("click", function (e) {
    var btn = e.target.closest("button.move");
    if (!btn) return;
    move(btn.closest(".card"), btn.classList.contains("up") ? -1 : 1);
  });
  list.addEventListener("change", refresh);
  list.addEventListener("keydown", function (e) {
    var card = e.target.closest(".card");
    if (!card || e.ctrlKey || e.metaKey) return;
    if (e.key === "ArrowUp" || e.key === "ArrowDown") {
      e.preventDefault();
      move(card, e.key === "ArrowUp" ? -1 : 1);
    } else if ((e.key === "t" || e.key === "T") && e.target === card) {
      var tie = card.querySelector(".tie");
      if (!tie.disabled) { tie.checked = !tie.checked; refresh(); }
    }
  });

  // Drag and drop by the handle.
  var dragged = null;
  list.addEventListener("mousedown", function (e) {
    var h = e.target.closest(".handle");
    if (h) h.closest(".card").setAttribute("draggable", "true");
  });
  list.addEventListener("dragstart", function (e) {
    dragged = e.target.closest(".card");
    if (!dragged) return;
    dragged.classList.add("dragging");
    e.dataTransfer.effectAllowed = "move";
    e.dataTransfer.setData("text/plain", dragged.getAttribute("data-letter"));
  });
  list.addEventListener("dragover", function (e) {
    if (!dragged) return;
    e.preventDefault();
    var after = null;
    cards().some(function (c) {
      if (c === dragged) return false;
      var box = c.getBoundingClientRect();
      if (e.clientY < box.top + box.height / 2) { after = c; return true; }
      return false;
    });
    if (after) list.insertBefore(dragged, after); else list.appendChild(dragged);
  });
  list.addEventListener("drop", function (e) { e.preventDefault(); });
  list.addEventListener("dragend", function () {
    if (dragged) { dragged.classList.remove("dragging"); dragged.removeAttribute("draggable"); }
    dragged = null;
    refresh();
  });

  var sent = false;
  form.addEventListener("submit", function (e) {
    refresh();
    if (ranking().length < 2) {
      e.preventDefault();
      clientError.textContent = "All responses are tied: a ranking must prefer at least one response.";
      clientError.hidden = false;
      return;
    }
    if (sent) { e.preventDefault(); return; }
    sent = true;
    document.getElementById("submit-btn").disabled = true;
  });
  document.addEventListener("keydown", function (e) {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) {
      e.preventDefault();
      if (typeof form.requestSubmit === "function") form.requestSubmit(); else form.submit();
    }
  });

  refresh();
})();
