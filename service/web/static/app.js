// Byline's chat page: talks to /v1/chat and /v1/articles. No build step, no dependencies.
// Article text and titles are untrusted: everything is rendered with textContent and DOM nodes.
"use strict";

(() => {
  const KEY_STORAGE = "byline.apiKey";
  const CONVERSATION_STORAGE = "byline.conversationId";

  const $ = (id) => document.getElementById(id);
  const els = {
    form: $("ask-form"),
    question: $("question"),
    ask: $("ask-button"),
    transcript: $("transcript"),
    empty: $("empty"),
    status: $("status"),
    apiKey: $("api-key"),
    newConversation: $("new-conversation"),
    article: $("article"),
    articleLabel: $("article-label"),
    articleTitle: $("article-title"),
    articleMeta: $("article-meta"),
    articleNote: $("article-note"),
    articleText: $("article-text"),
    closeArticle: $("close-article"),
    layout: document.querySelector(".layout"),
  };

  let conversationId = readStorage(CONVERSATION_STORAGE);
  let busy = false;

  // ---------------------------------------------------------------------------------------------
  // storage and HTTP

  function readStorage(name) {
    try { return window.localStorage.getItem(name) || null; } catch { return null; }
  }

  function writeStorage(name, value) {
    try {
      if (value) window.localStorage.setItem(name, value);
      else window.localStorage.removeItem(name);
    } catch { /* storage disabled: keep working for this page only */ }
  }

  class ServiceError extends Error {
    constructor(message, status) { super(message); this.status = status; }
  }

  async function api(path, options = {}) {
    const headers = { Accept: "application/json" };
    if (options.body !== undefined) headers["Content-Type"] = "application/json";
    const key = els.apiKey.value.trim();
    if (key) headers["X-API-Key"] = key;
    let response;
    try {
      response = await fetch(path, { ...options, headers });
    } catch {
      throw new ServiceError("The service is unreachable. Check that it is running and try again.", 0);
    }
    if (response.status === 204) return null;
    let body = null;
    try { body = await response.json(); } catch { body = null; }
    if (!response.ok) {
      const detail = body && body.detail !== undefined
        ? (typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail))
        : `HTTP ${response.status}`;
      throw new ServiceError(explain(response, detail), response.status);
    }
    if (body === null) throw new ServiceError("The service sent a response this page cannot read.", response.status);
    return body;
  }

  function explain(response, detail) {
    switch (response.status) {
      case 401: return `This service needs an API key: enter it at the top of the page (${detail}).`;
      case 429: {
        const wait = response.headers.get("Retry-After");
        return `Too many questions for now; try again${wait ? ` in ${wait} s` : " shortly"}.`;
      }
      case 503: return `The service is not ready yet: ${detail}`;
      case 413: return "That question is too long.";
      default: return response.status >= 500
        ? `The service failed (${response.status}): ${detail}`
        : `The service refused the question (${response.status}): ${detail}`;
    }
  }

  function showStatus(message, kind = "error") {
    els.status.textContent = message;
    els.status.className = kind === "info" ? "status info" : "status";
    els.status.hidden = !message;
  }

  // ---------------------------------------------------------------------------------------------
  // rendering a conversation

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  }

  function describe(item) {
    const parts = [];
    if (item.source) parts.push(item.source);
    if (item.published) parts.push(item.published);
    return parts.join(" · ");
  }

  function addUserTurn(text) {
    const li = el("li", "turn-user", text);
    els.transcript.appendChild(li);
    els.empty.hidden = true;
    return li;
  }

  function addPending() {
    const li = el("li", "turn-bot pending", "Reading the articles…");
    els.transcript.appendChild(li);
    li.scrollIntoView({ block: "end", behavior: "smooth" });
    return li;
  }

  function renderAnswer(li, answer) {
    li.className = answer.abstained ? "turn-bot abstained" : "turn-bot";
    li.replaceChildren();
    li.dataset.turn = answer.turn ?? "";
    if (answer.abstained) li.appendChild(el("p", "abstain-label", "No answer in the articles"));
    if (answer.standalone_question && answer.standalone_question !== answer.question) {
      li.appendChild(el("p", "searched", `Searched: ${answer.standalone_question}`));
    }
    const text = el("p", "answer-text");
    appendWithMarkers(text, answer.answer || "", answer.sources || []);
    li.appendChild(text);

    if (answer.sources && answer.sources.length) {
      const box = el("div", "sources");
      box.appendChild(el("h3", null, "Sources"));
      const list = el("ol");
      for (const source of answer.sources) {
        const item = el("li");
        const button = el("button", "source-item");
        button.type = "button";
        button.dataset.n = String(source.n);
        button.appendChild(el("span", "source-title", `[${source.n}] ${source.title}`));
        const meta = describe(source);
        if (meta) button.appendChild(el("span", "source-meta", ` — ${meta}`));
        const quote = source.quotes && source.quotes[0] ? source.quotes[0].text : source.passage;
        if (quote) button.appendChild(el("span", "source-quote", `“${quote}”`));
        button.addEventListener("click", () => openSource(source));
        item.appendChild(button);
        list.appendChild(item);
      }
      box.appendChild(list);
      li.appendChild(box);
    }
    if (answer.abstained && answer.related && answer.related.length) {
      const box = el("div", "related");
      box.appendChild(el("h3", null, "Related articles"));
      const list = el("ul");
      for (const related of answer.related) {
        const item = el("li");
        const button = el("button", "source-item");
        button.type = "button";
        button.appendChild(el("span", "source-title", related.title));
        const meta = describe(related);
        if (meta) button.appendChild(el("span", "source-meta", ` — ${meta}`));
        button.addEventListener("click", () => openArticle(related.article_id, [], "Related article"));
        item.appendChild(button);
        list.appendChild(item);
      }
      box.appendChild(list);
      li.appendChild(box);
    }
    if (answer.timings && answer.timings.total_ms) {
      li.appendChild(el("p", "timing", `${Math.round(answer.timings.total_ms)} ms · index ${answer.index_version}`));
    }
  }

  function appendWithMarkers(container, text, sources) {
    const byNumber = new Map(sources.map((s) => [s.n, s]));
    const pattern = /\[(\d+)\]/g;
    let last = 0;
    let sentence = "";
    for (const match of text.matchAll(pattern)) {
      const source = byNumber.get(Number(match[1]));
      if (!source) continue;
      if (match.index > last) container.appendChild(document.createTextNode(text.slice(last, match.index)));
      // the sentence this marker closes ("... back. [1] [2]" share one): its quote is the one to point at
      const between = text.slice(last, match.index).trim();
      if (between) sentence = between;
      const quote = sentence
        ? (source.quotes || []).find((q) => q.text && (sentence.includes(q.text) || q.text.includes(sentence)))
        : undefined;
      const cite = el("button", "cite", `[${source.n}]`);
      cite.type = "button";
      cite.dataset.n = String(source.n);
      cite.title = `${source.title}${describe(source) ? " — " + describe(source) : ""}`;
      cite.setAttribute("aria-label", `Source ${source.n}: ${source.title}`);
      cite.addEventListener("click", () => openSource(source, quote));
      container.appendChild(cite);
      last = match.index + match[0].length;
    }
    if (last < text.length) container.appendChild(document.createTextNode(text.slice(last)));
  }

  function renderFailure(li, message) {
    li.className = "turn-bot failed";
    li.setAttribute("role", "alert");
    li.textContent = message;
  }

  // ---------------------------------------------------------------------------------------------
  // the article panel

  function openSource(source, focus) {
    const quotes = (source.quotes || []).map((q) => ({
      start: q.start, end: q.end, text: q.text, focus: Boolean(focus && q.start === focus.start && q.end === focus.end),
    }));
    return openArticle(source.article_id, quotes, `Source [${source.n}]`);
  }

  async function openArticle(articleId, quotes, label) {
    els.article.hidden = false;
    els.layout.classList.add("with-article");
    els.articleLabel.textContent = label;
    els.articleTitle.textContent = "Loading…";
    els.articleMeta.replaceChildren();
    els.articleNote.hidden = true;
    els.articleText.replaceChildren();
    let article;
    try {
      article = await api(`/v1/articles/${encodeURIComponent(articleId)}`);
    } catch (error) {
      els.articleTitle.textContent = "The article could not be loaded";
      els.articleNote.textContent = error.message;
      els.articleNote.hidden = false;
      return;
    }
    els.articleTitle.textContent = article.title;
    const meta = [article.authors && article.authors.length ? `By ${article.authors.join(", ")}` : null,
      describe(article) || null].filter(Boolean).join(" · ");
    if (meta) els.articleMeta.appendChild(document.createTextNode(meta + " "));
    if (article.url && /^https?:\/\//i.test(article.url)) {
      const link = el("a", null, "original");
      link.href = article.url;
      link.rel = "noopener noreferrer";
      link.target = "_blank";
      els.articleMeta.appendChild(link);
    }
    const { highlights, moved } = locate(article.text, quotes);
    if (moved) {
      els.articleNote.textContent = "The article changed since this answer; the quote is shown where it now appears.";
      els.articleNote.hidden = false;
    }
    renderText(els.articleText, article.text, highlights, article.captions || []);
    scrollToMark(els.articleText.querySelector("mark.current") || els.articleText.querySelector("mark"));
  }

  function scrollToMark(mark) {
    // scroll the article panel, not the page; on a narrow screen bring the panel itself into view
    const panel = els.article.getBoundingClientRect();
    if (panel.top < 0 || panel.top > window.innerHeight) els.article.scrollIntoView({ block: "start" });
    if (!mark) {
      els.article.scrollTop = 0;
      return;
    }
    const offset = mark.getBoundingClientRect().top - els.article.getBoundingClientRect().top;
    els.article.scrollTop += offset - els.article.clientHeight / 3;
  }

  function locate(text, quotes) {
    // Trust the spans; if the text at a span is not the quote (a newer index version), find the quote.
    const highlights = [];
    let moved = false;
    for (const quote of quotes) {
      if (text.slice(quote.start, quote.end) === quote.text) {
        highlights.push([quote.start, quote.end, quote.focus]);
        continue;
      }
      const at = quote.text ? text.indexOf(quote.text) : -1;
      if (at >= 0) {
        highlights.push([at, at + quote.text.length, quote.focus]);
        moved = true;
      }
    }
    return { highlights, moved };
  }

  function renderText(container, text, highlights, captions) {
    const points = new Set([0, text.length]);
    for (const [start, end] of [...highlights, ...captions]) {
      points.add(Math.max(0, Math.min(text.length, start)));
      points.add(Math.max(0, Math.min(text.length, end)));
    }
    const sorted = [...points].sort((a, b) => a - b);
    const inside = (ranges, a, b) => ranges.some(([start, end]) => start <= a && b <= end);
    const fragment = document.createDocumentFragment();
    for (let i = 0; i + 1 < sorted.length; i += 1) {
      const a = sorted[i];
      const b = sorted[i + 1];
      if (b <= a) continue;
      const piece = text.slice(a, b);
      const highlighted = inside(highlights, a, b);
      const caption = inside(captions, a, b);
      const current = highlights.some(([start, end, focus]) => focus && start <= a && b <= end);
      let node;
      if (highlighted) {
        node = el("mark", [caption ? "caption" : "", current ? "current" : ""].join(" ").trim() || null, piece);
      } else if (caption) {
        node = el("span", "caption", piece);
      } else {
        node = document.createTextNode(piece);
      }
      fragment.appendChild(node);
    }
    container.replaceChildren(fragment);
  }

  function closeArticle() {
    els.article.hidden = true;
    els.layout.classList.remove("with-article");
  }

  // ---------------------------------------------------------------------------------------------
  // asking

  async function ask(question) {
    if (busy) return;
    busy = true;
    els.ask.disabled = true;
    showStatus("");
    addUserTurn(question);
    const pending = addPending();
    try {
      const body = { question };
      if (conversationId) body.conversation_id = conversationId;
      const answer = await api("/v1/chat", { method: "POST", body: JSON.stringify(body) });
      conversationId = answer.conversation_id;
      writeStorage(CONVERSATION_STORAGE, conversationId);
      renderAnswer(pending, answer);
      els.question.value = "";
    } catch (error) {
      if (error.status === 404 && conversationId) {
        // the conversation is gone (deleted, or a new database): start afresh with this question
        conversationId = null;
        writeStorage(CONVERSATION_STORAGE, null);
        renderFailure(pending, "This conversation no longer exists on the service; ask again to start a new one.");
      } else {
        renderFailure(pending, error.message);
      }
    } finally {
      busy = false;
      els.ask.disabled = false;
      pending.scrollIntoView({ block: "nearest", behavior: "smooth" });
    }
  }

  function newConversation() {
    conversationId = null;
    writeStorage(CONVERSATION_STORAGE, null);
    els.transcript.replaceChildren();
    els.empty.hidden = false;
    showStatus("");
    closeArticle();
    els.question.focus();
  }

  async function restore() {
    if (!conversationId) return;
    try {
      const conversation = await api(`/v1/conversations/${encodeURIComponent(conversationId)}`);
      for (const turn of conversation.turns) {
        addUserTurn(turn.question);
        const li = el("li", "turn-bot");
        els.transcript.appendChild(li);
        renderAnswer(li, { ...turn.answer, turn: turn.turn });
      }
    } catch (error) {
      if (error.status === 404) {
        conversationId = null;
        writeStorage(CONVERSATION_STORAGE, null);
      } else {
        showStatus(`Could not load the earlier conversation. ${error.message}`);
      }
    }
  }

  // ---------------------------------------------------------------------------------------------
  // wiring

  els.apiKey.value = readStorage(KEY_STORAGE) || "";
  els.apiKey.addEventListener("change", () => writeStorage(KEY_STORAGE, els.apiKey.value.trim()));
  els.form.addEventListener("submit", (event) => {
    event.preventDefault();
    const question = els.question.value.trim();
    if (question) ask(question);
  });
  els.question.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey) {
      event.preventDefault();
      els.form.requestSubmit();
    }
  });
  els.newConversation.addEventListener("click", newConversation);
  els.closeArticle.addEventListener("click", closeArticle);
  for (const example of document.querySelectorAll(".example")) {
    example.addEventListener("click", () => { els.question.value = example.textContent; els.question.focus(); });
  }
  restore();
})();
