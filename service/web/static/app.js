// Byline's chat page: talks to /v1/chat (streamed as server-sent events) and /v1/articles. No build step, no
// dependencies. Article text and titles are untrusted: everything is rendered with textContent and DOM nodes.
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
    limit: $("question-limit"),
    layout: document.querySelector(".layout"),
  };

  // the service's limit, written into the page by the server (settings.max_question_chars)
  const MAX_QUESTION_CHARS = Number(document.body.dataset.maxQuestionChars) || 2000;
  const numberFormat = new Intl.NumberFormat("en");

  let conversationId = readStorage(CONVERSATION_STORAGE);
  let busy = false;
  let inFlight = null; // the AbortController of the answer being streamed
  let opener = null; // the citation or source card that opened the article panel

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
    if (!response.ok) throw await refusal(response);
    let body = null;
    try { body = await response.json(); } catch { body = null; }
    if (body === null) throw new ServiceError("The service sent a response this page cannot read.", response.status);
    return body;
  }

  async function refusal(response) {
    let body = null;
    try { body = await response.json(); } catch { body = null; }
    const detail = body && body.detail !== undefined
      ? (typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail))
      : `HTTP ${response.status}`;
    return new ServiceError(explain(response, detail), response.status);
  }

  // POST a question with "stream": true and read the server-sent events (EventSource cannot POST):
  // meta, delta (a piece of the answer text), sources, done (the complete answer) or error.
  async function streamChat(body, { onDelta, signal }) {
    const headers = { Accept: "text/event-stream", "Content-Type": "application/json" };
    const key = els.apiKey.value.trim();
    if (key) headers["X-API-Key"] = key;
    let response;
    try {
      response = await fetch("/v1/chat", {
        method: "POST", headers, body: JSON.stringify({ ...body, stream: true }), signal,
      });
    } catch (error) {
      if (error.name === "AbortError") throw error;
      throw new ServiceError("The service is unreachable. Check that it is running and try again.", 0);
    }
    if (!response.ok) throw await refusal(response);
    const type = response.headers.get("Content-Type") || "";
    if (!type.startsWith("text/event-stream")) {
      // a service that does not stream: take the JSON answer whole
      try { return await response.json(); } catch {
        throw new ServiceError("The service sent a response this page cannot read.", response.status);
      }
    }
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let end;
        while ((end = buffer.search(/\r?\n\r?\n/)) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end).replace(/^\r?\n\r?\n/, "");
          const event = parseEvent(block);
          if (!event) continue;
          if (event.name === "delta") onDelta(event.data.text || "");
          else if (event.name === "done") return event.data;
          else if (event.name === "error") {
            throw new ServiceError(`The answer stopped halfway: ${event.data.detail || "the service failed"}.`, 500);
          }
        }
      }
    } catch (error) {
      if (error instanceof ServiceError || error.name === "AbortError") throw error;
      throw new ServiceError("The connection to the service broke while the answer came in; ask again.", 0);
    } finally {
      reader.releaseLock();
    }
    throw new ServiceError("The answer was cut off before it was complete; ask again.", 0);
  }

  function parseEvent(block) {
    let name = "message";
    const data = [];
    for (const line of block.split(/\r?\n/)) {
      if (line.startsWith(":")) continue; // a comment (keep-alive)
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
      if (field === "event") name = value;
      else if (field === "data") data.push(value);
    }
    if (!data.length) return null;
    try { return { name, data: JSON.parse(data.join("\n")) }; } catch { return null; }
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

  function host(url) {
    if (!url || !/^https?:\/\//i.test(url)) return null;
    try { return new URL(url).hostname.replace(/^www\./, ""); } catch { return null; }
  }

  // publication, date and link of a source card: what there is, and what is missing said so, never a blank
  function metaLine(item) {
    const line = el("span", "source-meta");
    const parts = [
      [item.source, "publication not given"],
      [item.published, "date not given"],
      [host(item.url) ? `link: ${host(item.url)}` : null, "no link"],
    ];
    parts.forEach(([value, missing], i) => {
      if (i) line.appendChild(document.createTextNode(" · "));
      line.appendChild(value ? document.createTextNode(value) : el("span", "missing", missing));
    });
    return line;
  }

  function addUserTurn(text) {
    const li = el("li", "turn-user", text);
    els.transcript.appendChild(li);
    els.empty.hidden = true;
    return li;
  }

  function addPending() {
    const li = el("li", "turn-bot pending", "Reading the articles…");
    li.dataset.state = "pending";
    els.transcript.appendChild(li);
    revealNewest(li);
    return li;
  }

  // Bring the newest answer fully into view above the sticky question box (its top, if it is taller than the
  // room there). Instant, so that following a streamed answer does not fight a running smooth scroll.
  function revealNewest(li) {
    const margin = 12;
    const box = li.getBoundingClientRect();
    const room = els.form.getBoundingClientRect().top - margin;
    if (box.height > room - margin) window.scrollBy(0, box.top - margin);
    else if (box.bottom > room) window.scrollBy(0, box.bottom - room);
    else if (box.top < 0) window.scrollBy(0, box.top - margin);
  }

  function startStreaming(li) {
    li.className = "turn-bot streaming";
    li.dataset.state = "streaming";
    li.removeAttribute("role");
    const text = el("p", "answer-text");
    li.replaceChildren(text);
    return text;
  }

  function renderAnswer(li, answer) {
    li.className = answer.abstained ? "turn-bot abstained" : "turn-bot";
    li.replaceChildren();
    li.dataset.turn = answer.turn ?? "";
    li.dataset.state = "done";
    if (answer.abstained) li.appendChild(el("p", "abstain-label", "No answer in the articles"));
    if (answer.standalone_question && answer.standalone_question !== answer.question) {
      li.appendChild(el("p", "searched", `Searched: ${answer.standalone_question}`));
    }
    const short = !answer.abstained && answer.short_answer;
    const shortSource = short && (answer.sources || []).find((s) => s.n === short.source);
    if (short && shortSource) {
      // the answer in a few words first, with its citation; it is a span of a cited quote
      const lead = el("p", "short-answer");
      lead.appendChild(el("strong", null, short.text));
      lead.appendChild(document.createTextNode(" "));
      lead.appendChild(citeButton(shortSource, shortQuote(shortSource, short), short));
      li.appendChild(lead);
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
        button.appendChild(el("span", "source-title", `[${source.n}] ${source.title || "Untitled article"}`));
        button.appendChild(metaLine(source));
        const quote = source.quotes && source.quotes[0] ? source.quotes[0].text : source.passage;
        if (quote) button.appendChild(el("span", "source-quote", `“${quote.replace(/^["“]|["”]$/g, "")}”`));
        button.addEventListener("click", (event) => openSource(source, undefined, null, event.currentTarget));
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
        button.appendChild(el("span", "source-title", related.title || "Untitled article"));
        button.appendChild(metaLine(related));
        button.addEventListener("click", (event) => {
          openArticle(related.article_id, [], "Related article", event.currentTarget);
        });
        item.appendChild(button);
        list.appendChild(item);
      }
      box.appendChild(list);
      li.appendChild(box);
    }
    li.appendChild(detailsLine(answer));
  }

  // what people need not read, for those who want it: timing, index version, how the answer was made
  function detailsLine(answer) {
    const details = el("details", "details");
    details.appendChild(el("summary", null, "Details"));
    const parts = [];
    if (answer.timings && answer.timings.total_ms) parts.push(`answered in ${Math.round(answer.timings.total_ms)} ms`);
    if (answer.mode) parts.push(answer.mode === "generated" ? "written by a language model" : "quoted from the articles");
    if (answer.reader) parts.push(`reader: ${answer.reader}`);
    if (answer.index_version) parts.push(`index version ${answer.index_version}`);
    if (answer.as_of) parts.push(`as of ${answer.as_of}`);
    details.appendChild(el("p", "timing", parts.join(" · ")));
    return details;
  }

  function shortQuote(source, short) {
    return (source.quotes || []).find((q) => q.start <= short.start && short.end <= q.end);
  }

  function citeButton(source, quote, short) {
    const cite = el("button", "cite", `[${source.n}]`);
    cite.type = "button";
    cite.dataset.n = String(source.n);
    cite.title = `${source.title}${describe(source) ? " — " + describe(source) : ""}`;
    cite.setAttribute("aria-label", `Source ${source.n}: ${source.title}`);
    cite.addEventListener("click", (event) => openSource(source, quote, short, event.currentTarget));
    return cite;
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
      container.appendChild(citeButton(source, quote));
      last = match.index + match[0].length;
    }
    if (last < text.length) container.appendChild(document.createTextNode(text.slice(last)));
  }

  function renderFailure(li, message) {
    li.className = "turn-bot failed";
    li.dataset.state = "failed";
    li.setAttribute("role", "alert");
    li.textContent = message;
  }

  // ---------------------------------------------------------------------------------------------
  // the article panel

  // focus: the quote to point at; short: the short answer, a span inside that quote, highlighted on its own
  function openSource(source, focus, short, from) {
    const quotes = (source.quotes || []).map((q) => ({
      start: q.start, end: q.end, text: q.text,
      focus: Boolean(!short && focus && q.start === focus.start && q.end === focus.end),
    }));
    if (short && short.article_id === source.article_id) {
      quotes.push({ start: short.start, end: short.end, text: short.text, focus: true });
    }
    return openArticle(source.article_id, quotes, `Source [${source.n}]`, from);
  }

  async function openArticle(articleId, quotes, label, from) {
    opener = from || null;
    els.article.hidden = false;
    els.layout.classList.add("with-article");
    els.closeArticle.focus({ preventScroll: true }); // keyboard users land in the panel; Escape goes back
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
    els.articleTitle.textContent = article.title || "Untitled article";
    // who, where, when and the original: what there is, and what is missing said so
    const parts = [
      article.authors && article.authors.length ? document.createTextNode(`By ${article.authors.join(", ")}`) : null,
      article.source ? document.createTextNode(article.source) : el("span", "missing", "publication not given"),
      article.published ? document.createTextNode(article.published) : el("span", "missing", "date not given"),
    ];
    if (article.url && /^https?:\/\//i.test(article.url)) {
      const link = el("a", null, "original article");
      link.href = article.url;
      link.rel = "noopener noreferrer";
      link.target = "_blank";
      parts.push(link);
    } else {
      parts.push(el("span", "missing", "no link"));
    }
    parts.filter(Boolean).forEach((node, i) => {
      if (i) els.articleMeta.appendChild(document.createTextNode(" · "));
      els.articleMeta.appendChild(node);
    });
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
    if (els.article.hidden) return;
    els.article.hidden = true;
    els.layout.classList.remove("with-article");
    // back to the citation that opened the panel, not the page body
    if (opener && opener.isConnected) opener.focus({ preventScroll: true });
    opener = null;
  }

  // ---------------------------------------------------------------------------------------------
  // asking

  function codePoints(text) {
    return [...text].length; // as the service counts (a UTF-16 surrogate pair is one character)
  }

  // Flag a question over the service's limit before it is sent (a paste is not cut silently)
  function checkLength() {
    const length = codePoints(els.question.value.trim());
    const over = length > MAX_QUESTION_CHARS;
    const near = length >= MAX_QUESTION_CHARS * 0.9;
    els.limit.hidden = !over && !near;
    els.limit.classList.toggle("over", over);
    els.limit.textContent = over
      ? `Your question is ${numberFormat.format(length)} characters; the limit is ` +
        `${numberFormat.format(MAX_QUESTION_CHARS)}. Shorten it to ask.`
      : `${numberFormat.format(length)} of ${numberFormat.format(MAX_QUESTION_CHARS)} characters`;
    if (over) els.question.setAttribute("aria-invalid", "true");
    else els.question.removeAttribute("aria-invalid");
    els.ask.disabled = busy || over;
    return !over;
  }

  async function ask(question) {
    if (busy) return;
    if (!checkLength()) {
      els.question.focus();
      return;
    }
    busy = true;
    els.ask.disabled = true;
    showStatus("");
    addUserTurn(question);
    const pending = addPending();
    const controller = new AbortController();
    inFlight = controller;
    let text = null; // the answer paragraph, once the first piece arrived
    try {
      const body = { question };
      if (conversationId) body.conversation_id = conversationId;
      const answer = await streamChat(body, {
        signal: controller.signal,
        onDelta(piece) {
          if (!text) text = startStreaming(pending); // "Reading the articles…" until the first piece
          text.appendChild(document.createTextNode(piece));
          pending.dataset.deltas = String(Number(pending.dataset.deltas || 0) + 1);
          revealNewest(pending);
        },
      });
      conversationId = answer.conversation_id;
      writeStorage(CONVERSATION_STORAGE, conversationId);
      const deltas = pending.dataset.deltas;
      renderAnswer(pending, answer);
      if (deltas) pending.dataset.deltas = deltas;
      els.question.value = "";
      checkLength();
    } catch (error) {
      if (error.name === "AbortError") return; // a new conversation was started meanwhile
      if (error.status === 404 && conversationId) {
        // the conversation is gone (deleted, or a new database): start afresh with this question
        conversationId = null;
        writeStorage(CONVERSATION_STORAGE, null);
        renderFailure(pending, "This conversation no longer exists on the service; ask again to start a new one.");
      } else {
        renderFailure(pending, error.message);
      }
    } finally {
      if (inFlight === controller) inFlight = null;
      busy = false;
      checkLength();
      if (pending.isConnected) revealNewest(pending);
    }
  }

  function newConversation() {
    if (inFlight) inFlight.abort();
    inFlight = null;
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
  els.question.addEventListener("input", checkLength);
  els.newConversation.addEventListener("click", newConversation);
  els.closeArticle.addEventListener("click", closeArticle);
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && !els.article.hidden) {
      event.preventDefault();
      closeArticle();
    }
  });
  for (const example of document.querySelectorAll(".example")) {
    example.addEventListener("click", () => {
      els.question.value = example.textContent;
      checkLength();
      els.question.focus();
    });
  }
  restore();
})();
