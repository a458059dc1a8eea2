// The glassformer playground: plain JavaScript over the JSON API of glassformer/serve/api.py.
//
// The page describes one text: the prompt, plus what was generated after it. The "Next token"
// panel shows the model's distribution for the token after that text (refreshed when a slider
// moves), and clicking a token of the text draws, for every layer and head, its attention onto
// the tokens before it, and beside it the logit lens at that token: what each layer's residual
// stream would predict comes next. For an instruct model the page also chats: the text is then the whole
// conversation as the model reads it (its chat template), and the reply streams in after it.
"use strict";

const $ = (id) => document.getElementById(id);
const SVG = "http://www.w3.org/2000/svg";
const SLIDERS = ["temperature", "top-k", "top-p", "max-tokens"];

let text = "";          // the prompt and what was generated: what the panels describe
let promptLength = 0;   // characters of `text` typed by the user
let generation = null;  // the AbortController of the running completion, if any
let latest = 0;         // the newest distribution request; answers to older ones are dropped
let mode = "complete";  // or "chat"
let messages = [];      // chat mode: the conversation so far, as OpenAI's messages

// ---- talking to the server ----

async function post(path, body, signal) {
  const response = await fetch(path, {
    method: "POST", headers: {"Content-Type": "application/json"},
    body: JSON.stringify(body), signal,
  });
  if (!response.ok) {
    const answer = await response.json().catch(() => ({}));
    throw new Error(answer.error ? answer.error.message : `${response.status} ${response.statusText}`);
  }
  return response;
}

// The JSON objects of a server-sent event stream: "data: {...}" events, each ended by a blank
// line, until "data: [DONE]".
async function* events(response) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const {value, done} = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const line = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      if (!line.startsWith("data: ")) continue;
      if (line === "data: [DONE]") return;
      yield JSON.parse(line.slice("data: ".length));
    }
  }
}

function sampling() {
  return {temperature: +$("temperature").value, top_k: +$("top-k").value, top_p: +$("top-p").value};
}

function showError(err) {
  $("error").textContent = err ? err.message : "";
}

// ---- generating ----

async function generate() {
  stop();
  text = $("prompt").value;
  promptLength = text.length;
  const output = $("output");
  output.replaceChildren(piece(text, "prompt pending"));
  const request = {prompt: text, ...lengthAndSampling()};
  await running(async (signal) => {
    const response = await post("/v1/completions", request, signal);
    for await (const data of events(response)) {
      if (data.error) throw new Error(data.error.message);
      const choice = data.choices[0];
      if (choice.text) {
        text += choice.text;
        output.append(piece(choice.text, "generated pending"));
      }
      if (choice.finish_reason) {
        $("finish").textContent = choice.finish_reason === "stop" ? "stopped at a stop string"
          : "reached max tokens";
      }
    }
  });
}

// Chat mode: the typed message is the user's next turn; the reply streams in after the
// conversation's text, and joins the conversation when it ends.
async function send() {
  stop();
  const content = $("prompt").value;
  if (!content) return;
  const turns = [...messages, {role: "user", content}];
  await running(async (signal) => {
    text = (await (await post("/v1/chat/text", {messages: turns}, signal)).json()).text;
    promptLength = text.length;
    const output = $("output");
    output.replaceChildren(piece(text, "prompt pending"));
    showConversation(turns, "");
    let reply = "";
    const response = await post("/v1/chat/completions", {messages: turns, ...lengthAndSampling()},
                                signal);
    for await (const data of events(response)) {
      if (data.error) throw new Error(data.error.message);
      const choice = data.choices[0];
      if (choice.delta.content) {
        reply += choice.delta.content;
        text += choice.delta.content;
        output.append(piece(choice.delta.content, "generated pending"));
        showConversation(turns, reply);
      }
      if (choice.finish_reason) {
        $("finish").textContent = choice.finish_reason === "stop" ? "end of the reply"
          : "reached max tokens";
      }
    }
    messages = [...turns, {role: "assistant", content: reply}];
    $("prompt").value = "";
  });
}

// A streamed request's common fields: its length, the sliders and the seed.
function lengthAndSampling() {
  const fields = {max_tokens: +$("max-tokens").value, stream: true, ...sampling()};
  if ($("seed").value !== "") fields.seed = +$("seed").value;
  return fields;
}

// Run `work(signal)`, a generation, with the Stop button on: Stop aborts it (and so ends it on
// the server), an error shows; afterwards the panels describe the whole text and the token
// after it.
async function running(work) {
  clearAttention();
  showError(null);
  $("finish").textContent = "";
  generation = new AbortController();
  setRunning(true);
  try {
    await work(generation.signal);
  } catch (err) {
    if (err.name === "AbortError") $("finish").textContent = "stopped";
    else showError(err);
  } finally {
    generation = null;
    setRunning(false);
    refresh();
  }
}

function showConversation(turns, reply) {
  const shown = reply ? [...turns, {role: "assistant", content: reply}] : turns;
  $("conversation").replaceChildren(...shown.map((m) => piece(m.content, `turn ${m.role}`)));
}

function setMode(chosen) {
  stop();
  mode = chosen;
  messages = [];
  text = "";
  promptLength = 0;
  const chat = mode === "chat";
  $("conversation").hidden = !chat;
  $("new-chat").hidden = !chat;
  $("conversation").replaceChildren();
  $("prompt-label").firstChild.textContent = chat ? "Message " : "Prompt ";
  $("prompt").placeholder = chat ? "Type a message" : "Type the start of a text";
  $("generate").textContent = chat ? "Send" : "Generate";
  $("prompt").value = "";
  clearAttention();
  refresh();
}

// Closing the connection ends the generation on the server too.
function stop() {
  if (generation) generation.abort();
}

function setRunning(running) {
  $("generate").disabled = running;
  $("stop").disabled = !running;
}

function piece(content, classes) {
  const span = document.createElement("span");
  span.className = classes;
  span.textContent = content;
  return span;
}

// ---- the text as tokens, and the next-token distribution ----

async function refresh() {
  const asked = ++latest;
  if (!text) {
    $("output").replaceChildren();
    $("distribution").replaceChildren();
    $("kept").textContent = "Type a prompt to see what the model would write next.";
    return;
  }
  try {
    const view = await (await post("/v1/distribution", {text, top: 12, ...sampling()})).json();
    if (asked !== latest) return;
    showTokens(view.tokens);
    showDistribution(view);
    showError(null);
  } catch (err) {
    if (asked === latest) showError(err);
  }
}

function showTokens(tokens) {
  let offset = 0;
  const spans = tokens.map((token, position) => {
    const span = piece(token, `token ${offset >= promptLength ? "generated" : "prompt"}`);
    if (token === "\n") span.classList.add("newline");
    span.dataset.position = position;
    span.title = `token ${position}: ${JSON.stringify(token)}`;
    offset += token.length;
    return span;
  });
  $("output").replaceChildren(...spans);
}

function showDistribution(view) {
  $("kept").textContent = `${view.setting}: ${view.kept} of ${view.vocab_size} tokens can be drawn`;
  const scale = Math.max(...view.candidates.map((c) => Math.max(c.probability, c.filtered)));
  const rows = view.candidates.map((c) => {
    const row = document.createElement("div");
    row.className = c.filtered > 0 ? "candidate" : "candidate removed";
    row.dataset.id = c.id;
    const bars = document.createElement("div");
    bars.className = "bars";
    for (const [kind, p] of [["raw", c.probability], ["filtered", c.filtered]]) {
      const bar = document.createElement("div");
      bar.className = `bar ${kind}`;
      bar.style.width = `${(100 * p) / scale}%`;
      bars.append(bar);
    }
    row.append(piece(JSON.stringify(c.token), "label"), bars,
               piece(`${c.probability.toFixed(3)} → ${c.filtered.toFixed(3)}`, "numbers"));
    return row;
  });
  $("distribution").replaceChildren(...rows);
}

// ---- attention ----

async function showAttention(position) {
  for (const span of $("output").querySelectorAll(".token.selected")) {
    span.classList.remove("selected");
  }
  $("output").querySelector(`.token[data-position="${position}"]`).classList.add("selected");
  try {
    const view = await (await post("/v1/attention", {text, position})).json();
    drawAttention(view);
    showError(null);
  } catch (err) {
    showError(err);
  }
}

// One row per layer and head, one column per key token (the query's window), each cell shaded
// by the square root of its weight, so that small weights still show (and attention spread
// evenly stays pale); the exact weight is in the cell's tooltip.
function drawAttention(view) {
  const keys = view.tokens.slice(view.start, view.position + 1);
  const cell = 18, left = 110, top = 60;
  const rows = view.layers.flatMap((layer, l) =>
    layer.heads.map((weights, h) => ({layer: l, head: h, name: layer.name, weights})));
  const svg = element("svg", {width: left + keys.length * cell + 10, height: top + rows.length * cell + 4});
  keys.forEach((token, k) => {
    const x = left + k * cell + cell / 2, y = top - 6;
    const label = element("text", {x, y, transform: `rotate(-60 ${x} ${y})`});
    label.textContent = JSON.stringify(token).slice(1, -1);
    svg.append(label);
  });
  rows.forEach((row, r) => {
    const y = top + r * cell;
    const label = element("text", {x: 0, y: y + cell - 5});
    label.textContent = `layer ${row.layer} head ${row.head}`;
    svg.append(label);
    row.weights.forEach((w, k) => {
      const rect = element("rect", {
        class: "cell", x: left + k * cell, y, width: cell, height: cell,
        fill: shade(Math.sqrt(w)), "data-layer": row.layer, "data-head": row.head,
        "data-key": view.start + k, "data-weight": w,
      });
      const title = element("title", {});
      title.textContent = `${row.name} head ${row.head}: ` +
        `${JSON.stringify(keys.at(-1))} → ${JSON.stringify(keys[k])} ${w.toFixed(3)}`;
      rect.append(title);
      svg.append(rect);
    });
  });
  $("attention").replaceChildren(svg);
  $("attention-caption").textContent = `Attention of token ${view.position} ` +
    `(${JSON.stringify(keys.at(-1))}) onto tokens ${view.start} to ${view.position}: ` +
    "rows are layer × head; darker is more (shaded by the square root of the weight).";
}

function clearAttention() {
  $("attention").replaceChildren();
  $("lens").replaceChildren();
}

// ---- logit lens ----

async function showLens(position) {
  try {
    drawLens(await (await post("/v1/lens", {text, position, top: 5})).json());
    showError(null);
  } catch (err) {
    showError(err);
  }
}

// One row per layer (the embeddings first): its top tokens, each shaded by its probability,
// and where the text goes on, the rank and probability of the token that does come next (its
// cell outlined where it is among the top ones).
function drawLens(view) {
  const table = document.createElement("table");
  const head = table.insertRow();
  for (const title of ["", ...view.layers[0].top.map((_, i) => `#${i + 1}`),
                       view.next ? `${JSON.stringify(view.next.token)}: rank, p` : "next"]) {
    const th = document.createElement("th");
    th.textContent = title;
    head.append(th);
  }
  for (const layer of view.layers) {
    const row = table.insertRow();
    row.dataset.layer = layer.layer;
    const name = document.createElement("th");
    name.textContent = layer.layer;
    row.append(name);
    for (const guess of layer.top) {
      const cell = row.insertCell();
      cell.className = view.next && guess.id === view.next.id ? "guess right" : "guess";
      cell.dataset.id = guess.id;
      cell.dataset.probability = guess.probability;
      cell.textContent = `${JSON.stringify(guess.token).slice(1, -1)} ${guess.probability.toFixed(2)}`;
      cell.style.background = shade(Math.sqrt(guess.probability));
      if (guess.probability > 0.3) cell.style.color = "#fff";
    }
    const next = row.insertCell();
    next.className = "next";
    if (layer.next_rank !== null) {
      next.dataset.rank = layer.next_rank;
      next.dataset.probability = layer.next_probability;
    }
    next.textContent = layer.next_rank === null ? "—"
      : `${layer.next_rank}, ${layer.next_probability.toPrecision(2)}`;
  }
  $("lens").replaceChildren(table);
  const token = JSON.stringify(view.tokens[view.position]);
  $("lens-caption").textContent = `Logit lens at token ${view.position} (${token}): ` +
    "each layer's top guesses for the next token, darker is more likely" +
    (view.next ? `; the text goes on with ${JSON.stringify(view.next.token)}.` : ".");
}

function element(name, attributes) {
  const node = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, value);
  return node;
}

function shade(x) {  // 0 -> white, 1 -> dark blue
  const mix = (a, b) => Math.round(a + (b - a) * x);
  return `rgb(${mix(255, 29)}, ${mix(255, 78)}, ${mix(255, 170)})`;
}

// ---- wiring ----

function debounce(fn, ms) {
  let timer;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
}

function showSliderValues() {
  for (const id of SLIDERS) $(`${id}-value`).textContent = $(id).value;
  if (+$("temperature").value === 0) $("temperature-value").textContent = "greedy";
  if (+$("top-k").value === 0) $("top-k-value").textContent = "off";
}

async function start() {
  const status = await (await fetch("/v1/status")).json();
  $("model").textContent = `${status.model}: ${status.n_layer} layers × ${status.n_head} heads, ` +
    `window ${status.block_size}, vocabulary ${status.vocab_size}`;
  $("max-tokens").max = status.limits.max_tokens;
  $("max-tokens").value = Math.min(200, status.limits.max_tokens);
  $("top-k").max = status.vocab_size;
  $("prompt").maxLength = status.limits.max_prompt_chars;
  $("modes").hidden = !status.chat;
  showSliderValues();
}

const refreshSoon = debounce(refresh, 150);
for (const id of SLIDERS) {
  $(id).addEventListener("input", () => {
    showSliderValues();
    if (id !== "max-tokens") refreshSoon();
  });
}
$("prompt").addEventListener("input", debounce(() => {
  if (mode === "chat") return;  // the panels describe the conversation, not the message typed
  // A generation started from this very prompt (Ctrl+Enter right after typing) goes on.
  if ($("prompt").value === text.slice(0, promptLength)) return;
  stop();
  text = $("prompt").value;
  promptLength = text.length;
  clearAttention();
  refresh();
}, 300));
const go = () => (mode === "chat" ? send() : generate());
$("prompt").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && event.ctrlKey) go();
});
$("generate").addEventListener("click", go);
for (const radio of document.querySelectorAll("input[name=mode]")) {
  radio.addEventListener("change", () => setMode(radio.value));
}
$("new-chat").addEventListener("click", () => setMode("chat"));
$("stop").addEventListener("click", stop);
$("output").addEventListener("click", (event) => {
  const token = event.target.closest(".token");
  if (!token) return;
  showAttention(+token.dataset.position);
  showLens(+token.dataset.position);
});
start().catch(showError);
