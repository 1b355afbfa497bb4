// nanobatch review: the contact sheet of a run directory, to approve, reject and note images.
// No framework and no network beyond this server: every URL here is relative to the page,
// whose path carries the session's token.
"use strict";
(function () {
  const PAGE = 120;
  const $ = (selector, root) => (root || document).querySelector(selector);
  const state = {
    summary: null,
    filter: { status: "", job: "", model: "", size: "", mark: "", q: "" },
    total: 0,
    items: [], // position in the filtered list -> item (sparse while pages load)
    pages: new Map(), // page number -> "loading" | "done"
    generation: 0, // bumped when the filter changes: late answers are dropped
    focus: 0,
    selected: new Set(), // task indices
    anchor: null,
    cols: 1,
    cellW: 212,
    cellH: 292,
    rendered: new Map(), // position -> element
    lightbox: null, // { i, pos }
    compare: null,
    firstScreen: false,
    saving: new Set(), // task indices whose mark is being written
  };

  // ---- server ---------------------------------------------------------------------------

  async function api(path, options) {
    const response = await fetch(path, options);
    if (!response.ok) {
      const text = await response.text();
      throw new Error(text || response.statusText);
    }
    return response.json();
  }

  function query(offset, limit) {
    const params = new URLSearchParams();
    for (const [k, v] of Object.entries(state.filter)) if (v) params.set(k, v);
    params.set("offset", offset);
    params.set("limit", limit);
    return params.toString();
  }

  async function loadSummary() {
    const summary = await api("api/summary");
    state.summary = summary;
    document.title = summary.name + " — nanobatch review";
    $("#name").textContent = summary.name;
    const marks = summary.mark || {};
    const status = summary.status || {};
    $("#counts").textContent =
      `${summary.tasks} tasks · ${status.succeeded || 0} with image · ` +
      `${marks.approved || 0} approved · ${marks.rejected || 0} rejected · ${marks.pending || 0} to review`;
    document.body.dataset.approved = marks.approved || 0;
    document.body.dataset.rejected = marks.rejected || 0;
    for (const select of document.querySelectorAll("select[data-facet]")) fillFacet(select, summary[select.dataset.facet] || {});
    const notices = $("#notices");
    notices.textContent = "";
    for (const note of summary.notes || []) {
      const div = document.createElement("div");
      div.className = "notice";
      div.textContent = note;
      notices.appendChild(div);
    }
  }

  function fillFacet(select, counts) {
    const chosen = select.value;
    while (select.options.length > 1) select.remove(1);
    for (const [value, n] of Object.entries(counts)) {
      const option = document.createElement("option");
      option.value = value;
      option.textContent = `${value.replace("_", " ")} (${n})`;
      select.appendChild(option);
    }
    select.value = chosen;
  }

  function ensurePages(from, to) {
    for (let page = Math.floor(from / PAGE); page <= Math.floor(Math.max(from, to) / PAGE); page++) {
      if (state.pages.has(page)) continue;
      state.pages.set(page, "loading");
      const generation = state.generation;
      api("api/tasks?" + query(page * PAGE, PAGE))
        .then((answer) => {
          if (generation !== state.generation) return;
          state.pages.set(page, "done");
          state.total = answer.total;
          answer.items.forEach((item, k) => (state.items[answer.offset + k] = item));
          layout();
        })
        .catch((e) => {
          state.pages.delete(page);
          toast("could not load tasks: " + e.message, true);
        });
    }
  }

  function refilter() {
    state.generation++;
    state.items = [];
    state.pages = new Map();
    state.total = 0;
    state.focus = 0;
    for (const el of state.rendered.values()) el.remove();
    state.rendered.clear();
    window.scrollTo(0, 0);
    const generation = state.generation;
    state.pages.set(0, "loading");
    return api("api/tasks?" + query(0, PAGE)).then((answer) => {
      if (generation !== state.generation) return;
      state.pages.set(0, "done");
      state.total = answer.total;
      answer.items.forEach((item, k) => (state.items[k] = item));
      layout();
    });
  }

  // ---- the grid (only the rows in view are in the DOM) -------------------------------------

  function layout() {
    const grid = $("#grid");
    const width = grid.clientWidth || window.innerWidth - 40;
    state.cols = Math.max(1, Math.floor(width / state.cellW));
    const rows = Math.ceil(state.total / state.cols);
    grid.style.height = rows * state.cellH + "px";
    $("#empty").hidden = state.total > 0 || !state.pages.has(0) || state.pages.get(0) === "loading";
    $("#shown").textContent = state.total === (state.summary && state.summary.tasks) ? "" : `${state.total} shown`;
    render();
  }

  function visibleRange() {
    const grid = $("#grid");
    const top = grid.getBoundingClientRect().top;
    const firstRow = Math.max(0, Math.floor(-top / state.cellH) - 1);
    const lastRow = Math.ceil((window.innerHeight - top) / state.cellH) + 1;
    return [firstRow * state.cols, Math.min(state.total, (lastRow + 1) * state.cols) - 1];
  }

  function render() {
    const [from, to] = visibleRange();
    if (to >= from) ensurePages(from, to);
    for (const [pos, el] of state.rendered) {
      if (pos < from || pos > to) {
        el.remove();
        state.rendered.delete(pos);
      }
    }
    const grid = $("#grid");
    for (let pos = from; pos <= to; pos++) {
      const item = state.items[pos];
      if (!item) continue;
      const key = cellKey(item, pos);
      let el = state.rendered.get(pos);
      if (el && el.dataset.key === key) continue;
      const fresh = cell(item, pos);
      fresh.dataset.key = key;
      if (el) el.replaceWith(fresh);
      else grid.appendChild(fresh);
      state.rendered.set(pos, fresh);
    }
    if (!state.firstScreen && state.total >= 0 && state.pages.get(0) === "done") markFirstScreen();
  }

  function cellKey(item, pos) {
    return [item.i, item.image, item.mark, item.note, item.versions, pos === state.focus, state.selected.has(item.i), state.saving.has(item.i), state.cols].join("|");
  }

  function cell(item, pos) {
    const el = document.createElement("div");
    el.className = "cell";
    if (item.mark) el.classList.add("mark-" + item.mark);
    if (pos === state.focus) el.classList.add("focus");
    if (state.selected.has(item.i)) el.classList.add("selected");
    if (state.saving.has(item.i)) el.classList.add("saving");
    el.dataset.pos = pos;
    el.dataset.i = item.i;
    el.dataset.id = item.id;
    el.dataset.mark = item.mark || "none";
    el.setAttribute("role", "gridcell");
    el.style.transform = `translate(${(pos % state.cols) * state.cellW}px, ${Math.floor(pos / state.cols) * state.cellH}px)`;
    const thumb = document.createElement("div");
    thumb.className = "thumb";
    if (item.image) {
      const img = document.createElement("img");
      img.src = "thumb/" + item.image;
      img.alt = item.id;
      img.decoding = "async";
      thumb.appendChild(img);
    } else {
      const empty = document.createElement("div");
      empty.className = "empty";
      empty.textContent = item.error || item.status.replace("_", " ");
      thumb.appendChild(empty);
    }
    el.appendChild(thumb);
    const meta = document.createElement("div");
    meta.className = "meta";
    const select = document.createElement("input");
    select.type = "checkbox";
    select.className = "sel";
    select.title = "select (x)";
    select.checked = state.selected.has(item.i);
    meta.appendChild(select);
    meta.appendChild(text("span", "key", item.key));
    if (item.status !== "succeeded") meta.appendChild(text("span", "badge " + item.status, item.status.replace("_", " ")));
    el.appendChild(meta);
    const earlier = item.versions ? ` · ${item.versions} earlier` : "";
    el.appendChild(text("div", "label", `${item.job} · ${item.label} · $${item.cost_usd.toFixed(4)}${earlier}`));
    if (item.image) {
      el.appendChild(markButtons(item));
      if (item.note) el.appendChild(text("div", "note", item.note));
    }
    return el;
  }

  // Approve and reject buttons (lit for the mark in force) and the mark's badge.
  function markButtons(item) {
    const actions = document.createElement("div");
    actions.className = "actions";
    actions.appendChild(button("approve" + (item.mark === "approved" ? " on" : ""), "✓", "approve (a)"));
    actions.appendChild(button("reject" + (item.mark === "rejected" ? " on" : ""), "✗", "reject (r)"));
    actions.appendChild(text("span", "badge " + item.mark, item.mark));
    return actions;
  }

  function text(tag, className, content) {
    const el = document.createElement(tag);
    if (className) el.className = className;
    el.textContent = content;
    return el;
  }

  function button(className, content, title) {
    const el = text("button", className, content);
    el.type = "button";
    el.title = title;
    return el;
  }

  function markFirstScreen() {
    state.firstScreen = true;
    const images = [...document.querySelectorAll("#grid img")];
    const done = () => {
      document.body.dataset.firstScreenMs = Math.round(performance.now());
      document.body.dataset.ready = "1";
    };
    if (images.length === 0) return done();
    let left = images.length;
    const one = () => {
      if (--left === 0) done();
    };
    for (const img of images) {
      if (img.complete) one();
      else {
        img.addEventListener("load", one, { once: true });
        img.addEventListener("error", one, { once: true });
      }
    }
  }

  // ---- focus, selection, marks ------------------------------------------------------------

  function setFocus(pos, scroll) {
    if (state.total === 0) return;
    state.focus = Math.max(0, Math.min(state.total - 1, pos));
    if (scroll !== false) {
      const grid = $("#grid");
      const row = Math.floor(state.focus / state.cols);
      const top = grid.getBoundingClientRect().top + window.scrollY + row * state.cellH;
      const header = $("#top").offsetHeight;
      if (top < window.scrollY + header) window.scrollTo(0, top - header - 8);
      else if (top + state.cellH > window.scrollY + window.innerHeight) window.scrollTo(0, top + state.cellH - window.innerHeight + 8);
    }
    render();
  }

  function focused() {
    return state.items[state.focus];
  }

  function targets() {
    if (state.selected.size > 0 && !state.lightbox) {
      return state.items.filter((item) => item && state.selected.has(item.i));
    }
    if (state.lightbox) return state.lightbox.item ? [state.lightbox.item] : [];
    const item = focused();
    return item ? [item] : [];
  }

  async function mark(items, verdict, note) {
    const changes = items
      .filter((item) => item.image)
      .map((item) => ({ image: item.image, mark: verdict, note: note !== undefined ? note : verdict === "cleared" ? null : item.note }));
    if (changes.length === 0) {
      toast("nothing to mark: no image", true);
      return;
    }
    for (const item of items) state.saving.add(item.i);
    render();
    try {
      const updated = await api("api/marks", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ marks: changes }),
      });
      apply(updated);
      toast(`${updated.length} ${verdict === "cleared" ? "cleared" : verdict} · saved`);
      loadSummary().catch(() => {});
    } catch (e) {
      toast("not saved: " + e.message, true);
    } finally {
      for (const item of items) state.saving.delete(item.i);
      render();
    }
  }

  function apply(updated) {
    const byIndex = new Map(updated.map((item) => [item.i, item]));
    state.items.forEach((item, pos) => {
      if (item && byIndex.has(item.i)) state.items[pos] = byIndex.get(item.i);
    });
    if (state.lightbox && byIndex.has(state.lightbox.i)) {
      state.lightbox.item = byIndex.get(state.lightbox.i);
      showLightbox(state.lightbox.i, state.lightbox.pos);
    }
    if (state.compare) openCompare(state.compare);
  }

  function toggleSelect(item, range) {
    if (range && state.anchor !== null) {
      const [a, b] = [Math.min(state.anchor, state.focus), Math.max(state.anchor, state.focus)];
      for (let pos = a; pos <= b; pos++) if (state.items[pos]) state.selected.add(state.items[pos].i);
    } else if (state.selected.has(item.i)) state.selected.delete(item.i);
    else state.selected.add(item.i);
    state.anchor = state.focus;
    updateBulk();
    render();
  }

  function updateBulk() {
    $("#bulk").hidden = state.selected.size === 0;
    $("#bulk-count").textContent = `${state.selected.size} selected`;
  }

  // ---- lightbox and compare -----------------------------------------------------------------

  async function showLightbox(i, pos) {
    const detail = await api("api/task/" + i);
    state.lightbox = { i, pos, item: detail };
    const box = $("#lightbox");
    box.hidden = false;
    const big = $("#big");
    if (detail.image) {
      if (big.dataset.image !== detail.image) {
        big.src = "image/" + detail.image;
        big.dataset.image = detail.image;
        $("#stage").classList.remove("zoomed");
      }
      big.alt = detail.id;
      big.hidden = false;
    } else {
      big.hidden = true;
    }
    const panel = $("#panel");
    panel.textContent = "";
    panel.appendChild(text("h2", "", detail.id));
    const badges = document.createElement("div");
    badges.appendChild(text("span", "badge " + detail.status, detail.status.replace("_", " ")));
    if (detail.mark) {
      badges.append(" ");
      badges.appendChild(text("span", "badge " + detail.mark, detail.mark));
    }
    panel.appendChild(badges);
    if (detail.image) {
      const actions = document.createElement("div");
      actions.className = "actions";
      actions.appendChild(button("approve" + (detail.mark === "approved" ? " on" : ""), "✓ approve", "approve (a)"));
      actions.appendChild(button("reject" + (detail.mark === "rejected" ? " on" : ""), "✗ reject", "reject (r)"));
      actions.appendChild(button("clear", "clear", "clear (c)"));
      actions.appendChild(button("note", "note…", "note (n)"));
      actions.appendChild(button("compare", "compare row", "compare (v)"));
      panel.appendChild(actions);
    }
    if (detail.note) panel.appendChild(text("p", "", "Note: " + detail.note));
    const dl = document.createElement("dl");
    const field = (name, value) => {
      if (value === null || value === undefined || value === "") return;
      dl.appendChild(text("dt", "", name));
      dl.appendChild(text("dd", "", String(value)));
    };
    field("job", detail.job);
    field("key", detail.key);
    field("model", detail.model);
    field("size", detail.size);
    field("prompt", detail.prompt_name);
    field("reference set", detail.ref_set);
    field("step", detail.step);
    field("variant", detail.variant > 1 ? detail.variant : null);
    field("cost", `$${detail.cost_usd.toFixed(4)} (estimated $${detail.estimated_usd.toFixed(4)})`);
    field("attempts", detail.attempts);
    field("finish", detail.finish_reason);
    field("outputs", detail.outputs.join(", "));
    for (const [k, v] of detail.vars) field(k, v);
    panel.appendChild(dl);
    if (detail.error) panel.appendChild(text("p", "error", (detail.error_class ? detail.error_class + ": " : "") + detail.error));
    for (const step of detail.history) {
      panel.appendChild(text("h3", "sub", "earlier step · " + step.label));
      panel.appendChild(versionStrip([{ item: step, caption: step.status.replace("_", " ") }]));
      panel.appendChild(text("pre", "", step.prompt));
    }
    panel.appendChild(text("h3", "sub", "prompt"));
    panel.appendChild(text("pre", "", detail.prompt));
    if (detail.refs.length) {
      panel.appendChild(text("h3", "sub", "references"));
      panel.appendChild(text("pre", "", detail.refs.join("\n")));
    }
    if (detail.upstream.length) {
      panel.appendChild(text("h3", "sub", "from other jobs"));
      panel.appendChild(versionStrip(detail.upstream.map((u) => ({ item: u, caption: u.id }))));
    }
    const versions = detail.versions || [];
    if (versions.length) {
      panel.appendChild(text("h3", "sub", "versions (earlier first)"));
      const why = { rerun: "re-rolled", changed: "inputs changed", modified: "edited" };
      const strip = versions.map((v) => ({ image: v.image, caption: `${why[v.reason] || v.reason}${v.mark ? " · " + v.mark : ""}` }));
      strip.push({ image: detail.image, caption: "current" + (detail.mark ? " · " + detail.mark : ""), current: true });
      panel.appendChild(versionStrip(strip));
    }
  }

  function versionStrip(entries) {
    const strip = document.createElement("div");
    strip.className = "versions";
    for (const entry of entries) {
      const figure = document.createElement("figure");
      if (entry.current) figure.className = "current";
      const image = entry.image || (entry.item && entry.item.image);
      if (image) {
        const img = document.createElement("img");
        img.src = "thumb/" + image;
        img.alt = entry.caption;
        img.dataset.full = image;
        figure.appendChild(img);
      }
      figure.appendChild(text("figcaption", "", entry.caption));
      strip.appendChild(figure);
    }
    return strip;
  }

  function closeOverlays() {
    if (!$("#notedlg").hidden) return void ($("#notedlg").hidden = true);
    if (!$("#help").hidden) return void ($("#help").hidden = true);
    if (state.lightbox) {
      state.lightbox = null;
      $("#lightbox").hidden = true;
      return;
    }
    if (state.compare !== null) {
      state.compare = null;
      $("#compare").hidden = true;
      return;
    }
    if (state.selected.size) {
      state.selected.clear();
      updateBulk();
      render();
    }
  }

  async function openCompare(i) {
    const items = await api("api/row/" + i);
    state.compare = i;
    $("#compare").hidden = false;
    $("#compare-title").textContent = items.length ? `${items[0].job} · ${items[0].key} — ${items.length} tasks` : "";
    const box = $("#compare-items");
    box.textContent = "";
    for (const item of items) {
      const card = document.createElement("div");
      card.className = "card" + (item.mark ? " mark-" + item.mark : "");
      card.dataset.i = item.i;
      card.dataset.mark = item.mark || "none";
      if (item.image) {
        const img = document.createElement("img");
        img.src = "image/" + item.image;
        img.alt = item.id;
        card.appendChild(img);
      } else card.appendChild(text("div", "empty", item.error || item.status));
      card.appendChild(text("div", "", item.label));
      if (item.image) card.appendChild(markButtons(item));
      card._item = item;
      box.appendChild(card);
    }
  }

  function openNote(items) {
    if (!items.length || !items.some((item) => item.image)) return;
    state.noteFor = items;
    $("#note-for").textContent = items.length === 1 ? items[0].id : `${items.length} images`;
    $("#note").value = items.length === 1 ? items[0].note || "" : "";
    $("#notedlg").hidden = false;
    $("#note").focus();
  }

  // ---- events -------------------------------------------------------------------------------

  function itemOf(el) {
    const cellEl = el.closest(".cell");
    return cellEl ? [state.items[Number(cellEl.dataset.pos)], Number(cellEl.dataset.pos)] : [null, -1];
  }

  function onGridClick(event) {
    const [item, pos] = itemOf(event.target);
    if (!item) return;
    if (event.target.closest("button.approve")) return void mark([item], item.mark === "approved" ? "cleared" : "approved");
    if (event.target.closest("button.reject")) return void mark([item], item.mark === "rejected" ? "cleared" : "rejected");
    const range = event.shiftKey;
    state.focus = pos;
    if (event.target.matches("input.sel") || range || event.ctrlKey || event.metaKey) {
      event.preventDefault();
      return toggleSelect(item, range);
    }
    state.anchor = pos;
    render();
  }

  function onKey(event) {
    if (event.target.matches("input[type=search], textarea, select")) {
      if (event.key === "Escape") event.target.blur();
      return;
    }
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (!$("#notedlg").hidden || !$("#help").hidden) {
      if (event.key === "Escape") closeOverlays();
      return;
    }
    const key = event.key;
    const step = (delta) => {
      if (state.lightbox) {
        const pos = (state.lightbox.pos >= 0 ? state.lightbox.pos : state.focus) + delta;
        if (pos < 0 || pos >= state.total || !state.items[pos]) return;
        setFocus(pos);
        showLightbox(state.items[pos].i, pos);
      } else setFocus(state.focus + delta);
    };
    const handled = {
      ArrowRight: () => step(1), l: () => step(1),
      ArrowLeft: () => step(-1), h: () => step(-1),
      ArrowDown: () => step(state.lightbox ? 1 : state.cols), j: () => step(state.lightbox ? 1 : state.cols),
      ArrowUp: () => step(state.lightbox ? -1 : -state.cols), k: () => step(state.lightbox ? -1 : -state.cols),
      Home: () => setFocus(0), End: () => setFocus(state.total - 1),
      a: () => mark(targets(), "approved"),
      r: () => mark(targets(), "rejected"),
      c: () => mark(targets(), "cleared"),
      n: () => openNote(targets()),
      x: () => focused() && toggleSelect(focused(), event.shiftKey),
      X: () => focused() && toggleSelect(focused(), true),
      Enter: () => focused() && showLightbox(focused().i, state.focus),
      " ": () => (state.lightbox ? closeOverlays() : focused() && showLightbox(focused().i, state.focus)),
      v: () => {
        const item = state.lightbox ? state.lightbox.item : focused();
        if (item) openCompare(item.i);
      },
      z: () => state.lightbox && $("#stage").classList.toggle("zoomed"),
      "/": () => $("#q").focus(),
      "?": () => ($("#help").hidden = false),
      Escape: () => closeOverlays(),
    }[key];
    if (handled) {
      event.preventDefault();
      handled();
    }
  }

  function toast(message, bad) {
    const el = $("#toast");
    el.textContent = message;
    el.className = "show" + (bad ? " bad" : "");
    clearTimeout(toast.timer);
    toast.timer = setTimeout(() => (el.className = ""), bad ? 6000 : 1800);
  }

  function init() {
    const grid = $("#grid");
    grid.addEventListener("click", onGridClick);
    grid.addEventListener("dblclick", (event) => {
      const [item, pos] = itemOf(event.target);
      if (item) showLightbox(item.i, pos);
    });
    document.addEventListener("keydown", onKey);
    window.addEventListener("scroll", () => requestAnimationFrame(render), { passive: true });
    window.addEventListener("resize", () => requestAnimationFrame(layout));
    for (const select of document.querySelectorAll("select[data-facet]")) {
      select.addEventListener("change", () => {
        state.filter[select.dataset.facet] = select.value;
        refilter();
      });
    }
    let typing = null;
    $("#q").addEventListener("input", (event) => {
      clearTimeout(typing);
      typing = setTimeout(() => {
        state.filter.q = event.target.value.trim();
        refilter();
      }, 200);
    });
    document.addEventListener("click", (event) => {
      if (event.target.closest("[data-close]")) closeOverlays();
    });
    $("#help-button").addEventListener("click", () => ($("#help").hidden = false));
    $("#bulk").addEventListener("click", (event) => {
      const verdict = event.target.dataset && event.target.dataset.bulk;
      if (!verdict) return;
      if (verdict === "none") {
        state.selected.clear();
        updateBulk();
        return render();
      }
      mark(targets(), verdict);
    });
    $("#panel").addEventListener("click", (event) => {
      const item = state.lightbox && state.lightbox.item;
      if (!item) return;
      const b = event.target.closest("button");
      if (b && b.classList.contains("approve")) mark([item], "approved");
      else if (b && b.classList.contains("reject")) mark([item], "rejected");
      else if (b && b.classList.contains("clear")) mark([item], "cleared");
      else if (b && b.classList.contains("note")) openNote([item]);
      else if (b && b.classList.contains("compare")) openCompare(item.i);
      else if (event.target.dataset.full) {
        $("#big").src = "image/" + event.target.dataset.full;
        $("#big").dataset.image = event.target.dataset.full;
      }
    });
    const stage = $("#stage");
    stage.addEventListener("click", () => stage.classList.toggle("zoomed"));
    stage.addEventListener("wheel", (event) => {
      if (!event.ctrlKey) return;
      event.preventDefault();
      const img = $("#big");
      const scale = Math.min(8, Math.max(0.25, (Number(img.dataset.scale) || 1) * (event.deltaY < 0 ? 1.15 : 1 / 1.15)));
      img.dataset.scale = scale;
      img.style.transform = `scale(${scale})`;
    }, { passive: false });
    $("#compare-items").addEventListener("click", (event) => {
      const card = event.target.closest(".card");
      if (!card) return;
      const item = card._item;
      if (event.target.closest("button.approve")) mark([item], item.mark === "approved" ? "cleared" : "approved");
      else if (event.target.closest("button.reject")) mark([item], item.mark === "rejected" ? "cleared" : "rejected");
      else if (event.target.tagName === "IMG") showLightbox(item.i, -1);
    });
    $("#noteform").addEventListener("submit", (event) => {
      event.preventDefault();
      const verdict = (event.submitter && event.submitter.value) || "rejected";
      $("#notedlg").hidden = true;
      mark(state.noteFor || [], verdict, $("#note").value.trim());
    });
    $("#note").addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey) {
        event.preventDefault();
        const items = state.noteFor || [];
        const verdict = items.length === 1 && items[0].mark === "approved" ? "approved" : "rejected";
        $("#notedlg").hidden = true;
        mark(items, verdict, $("#note").value.trim());
      } else if (event.key === "Escape") closeOverlays();
    });
    Promise.all([loadSummary(), refilter()]).catch((e) => toast("could not load the run: " + e.message, true));
  }

  init();
})();
