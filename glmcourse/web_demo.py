"""Lesson 03: chat with a ChatGLM model in the browser (the seed's web_demo.py, with gradio).

    python -m glmcourse.web_demo [--model PATH] [--host 127.0.0.1] [--port 7860] [--trust_remote_code]

A chat box, Submit and Clear History buttons, sliders for Maximum length, Top P and Temperature, and
example prompts of what the course model was trained to do. Enter sends, Shift+Enter starts a new line.
Answers stream in and are rendered as markdown (code blocks included); HTML and images in a message are
shown as text, so no message makes the browser fetch anything. The page is served on 127.0.0.1 only,
unless ``--host`` says otherwise (with a warning); there are no share links, no analytics, and every asset
(fonts included) comes from the local gradio package. Flags (and whether the port is free) are checked
before the model is loaded. Needs the ``web`` extra: ``pip install -e '.[web]'``.
"""
from __future__ import annotations

import os
import re
import sys

# Before gradio is imported: it reads this once, and would otherwise report usage over the network.
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

from glmcourse.cli import UsageError, check_port_free, int_arg, is_loopback, one_line, port_arg  # noqa: E402
from glmcourse.cli_demo import EXAMPLES, check_gen  # noqa: E402
from glmcourse.i18n import _  # noqa: E402

DEFAULTS = {"max_length": 2048, "top_p": 0.7, "temperature": 0.95}  # ChatGLM-6B's web demo
# How the note of a turn that got no answer starts, in either language: such turns are not history.
NOT_ANSWERED = ("*(not answered", "*(未回答")


def placeholder() -> str:
    return _("Type a message (Enter sends, Shift+Enter adds a new line)")


# ------------------------------------------------------------------------------ showing text safely
_FENCE_OPEN = re.compile(r"^(`{3,}|~{3,})(.*)$")  # a top-level fence, at column 0
_FENCE_LINE = re.compile(r"^ {0,3}(`{3,}|~{3,})")


def _safe_prose(text: str) -> str:
    """Prose: '<' becomes an entity (no HTML tag can form) and '![' loses its image meaning (no fetch)."""
    return text.replace("<", "&lt;").replace("![", "!\\[")


def _safe_line(line: str) -> str:
    """One line outside code blocks: code spans (same line, matched backtick runs) kept, the rest made safe."""
    out, i, n, prose_start = [], 0, len(line), 0
    while i < n:
        if line[i] != "`":
            i += 1
            continue
        backslashes = len(line[:i]) - len(line[:i].rstrip("\\"))
        j = i
        while j < n and line[j] == "`":
            j += 1
        if backslashes % 2:  # an escaped backtick is text
            i = j
            continue
        run, k, close = j - i, j, -1
        while k < n:
            if line[k] == "`":
                m = k
                while m < n and line[m] == "`":
                    m += 1
                if m - k == run:
                    close = k
                    break
                k = m
            else:
                k += 1
        if close < 0:
            i = j
            continue
        out.append(_safe_prose(line[prose_start:i]))
        out.append(line[i:close + run])  # a code span: markdown shows it literally
        i = prose_start = close + run
    out.append(_safe_prose(line[prose_start:]))
    return "".join(out)


def safe_markdown(text: str) -> str:
    """Markdown that renders as before (emphasis, lists, code blocks) but can hold no HTML and no image.

    Outside code, ``<`` becomes ``&lt;`` and ``![`` becomes ``!\\[``, so ``<img src=http://...>`` and
    ``![x](http://...)`` show as text and the browser fetches nothing; code blocks and code spans,
    which markdown already shows literally, are left exactly as written. A line is treated as code only
    where every markdown reader agrees it is (fences at column 0, spans on one line); elsewhere it is
    made safe, which at worst shows ``&lt;`` literally inside an unusual code block.
    """
    out, fence = [], None
    for line in str(text).splitlines(keepends=True):
        if fence is not None:
            close = _FENCE_LINE.match(line)
            if close and close.group(1)[0] == fence[0] and len(close.group(1)) >= len(fence):
                fence = None  # closing eagerly is the safe direction
                out.append(_safe_prose(line))
            else:
                out.append(line)
            continue
        opened = _FENCE_OPEN.match(line)
        if opened and not (opened.group(1)[0] == "`" and "`" in opened.group(2)):
            fence = opened.group(1)
            out.append(opened.group(1) + _safe_prose(opened.group(2)) + line[len(opened.group(0)):])
            continue
        out.append(_safe_line(line))
    return "".join(out)


# ------------------------------------------------------------------------------ one turn
def _text_of(content) -> str:
    """The text of one chat message as gradio hands it over (a string, or a list of content parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        return str(content.get("text") or content.get("content") or "")
    if isinstance(content, (list, tuple)):
        return "".join(_text_of(part) for part in content)
    return ""


def history_from(messages, state) -> list:
    """The (query, response) pairs of the conversation the client sent, and nothing else.

    ``state`` (the page's hidden raw history) is used only when it is exactly the conversation shown in
    ``messages``; otherwise (an API call, an edited chat) the pairs are read from ``messages`` themselves,
    skipping turns that were not answered. So an API call with an empty history gets an answer with none.
    """
    shown = [(m.get("role"), _text_of(m.get("content"))) for m in (messages or []) if isinstance(m, dict)]
    pairs = [(shown[i][1], shown[i + 1][1]) for i in range(0, len(shown) - 1, 2)
             if shown[i][0] == "user" and shown[i + 1][0] == "assistant"
             and not shown[i + 1][1].startswith(NOT_ANSWERED)]
    given = [t for t in (state or []) if isinstance(t, (list, tuple)) and len(t) == 2]
    if len(given) == len(pairs) and all((safe_markdown(q), safe_markdown(r)) == pair for (q, r), pair in zip(given, pairs)):
        return given  # the page's own raw history, exactly what it shows
    return [tuple(p) for p in pairs]


def respond(model, tokenizer, query: str, messages: list, history: list, max_length, top_p, temperature,
            max_new_tokens=None):
    """Stream one answer into the chat box. Yields ``(messages, history, textbox_value)``.

    ``messages`` is what gradio shows (role/content dicts, made safe by ``safe_markdown``); ``history``
    is what ``stream_chat`` needs, a list of (query, response) pairs of the raw text. An empty query
    changes nothing. A turn that cannot be answered (a message too long for the context, a setting out
    of range) shows one line in the chat box and keeps the history as it was.
    """
    from glmcourse.chat import QueryTooLong, stream_chat
    from glmcourse.cli import clean_text

    messages = list(messages or [])
    history = history_from(messages, history)
    query = clean_text(query) if isinstance(query, str) else ""
    if not query or not query.strip():
        yield messages, history, query
        return
    asked = list(messages) + [{"role": "user", "content": safe_markdown(query)}]
    try:
        gen = check_gen(dict(max_length=max_length, top_p=top_p, temperature=temperature,
                             max_new_tokens=max_new_tokens))
    except UsageError as err:
        note = _("*(not answered: {reason})*", reason=safe_markdown(str(err)))
        yield asked + [{"role": "assistant", "content": note}], history, query
        return
    if gen.get("max_new_tokens") is None:
        gen.pop("max_new_tokens", None)
    yield asked + [{"role": "assistant", "content": ""}], history, ""
    try:
        for response, new_history in stream_chat(model, tokenizer, query, history, **gen):
            yield asked + [{"role": "assistant", "content": safe_markdown(response)}], new_history, ""
    except (ValueError, RuntimeError, TypeError, IndexError) as err:
        text = one_line(err)
        if isinstance(err, QueryTooLong):
            text = _("the message is too long for the model's context; shorten it or raise Maximum length")
        note = _("*(not answered: {reason}. The conversation so far is kept.)*", reason=safe_markdown(text))
        yield asked + [{"role": "assistant", "content": note}], history, query


def build_demo(model, tokenizer, max_new_tokens=None):
    """The gradio Blocks app (not launched)."""
    import gradio as gr

    limit = getattr(model.config, "max_sequence_length", None)
    note = (_("prompt + answer tokens; this model was trained up to {limit}", limit=limit) if limit
            else _("prompt + answer tokens"))

    def on_submit(query, messages, history, max_length, top_p, temperature):
        yield from respond(model, tokenizer, query, messages, history, max_length, top_p, temperature,
                           max_new_tokens=max_new_tokens)

    with gr.Blocks(title=_("ChatGLM course model"), analytics_enabled=False) as demo:
        gr.Markdown(_("# {title}\nThe seed's web demo on the course model (CourseGLM). Answers stream and render "
                      "as markdown. It was trained on greetings, capitals, sums, word translation and remembering "
                      "your name: try an example below.", title=_("ChatGLM course model")))
        chatbot = gr.Chatbot(label="ChatGLM", height=420, render_markdown=True, sanitize_html=True,
                             allow_tags=False, elem_id="chatbot")
        history = gr.State([])
        with gr.Row():
            with gr.Column(scale=4):
                user_input = gr.Textbox(show_label=False, placeholder=placeholder(), lines=1, max_lines=8,
                                        elem_id="user_input")  # one line: Enter sends, Shift+Enter breaks the line
                submit = gr.Button(_("Submit"), variant="primary", elem_id="submit")
                gr.Examples(examples=[[e] for e in EXAMPLES], inputs=[user_input], label=_("Examples"))
            with gr.Column(scale=1):
                clear = gr.Button(_("Clear History"), elem_id="clear")
                max_length = gr.Slider(16, 4096, value=DEFAULTS["max_length"], step=1, label=_("Maximum length"),
                                       info=note)
                top_p = gr.Slider(0.01, 1.0, value=DEFAULTS["top_p"], step=0.01, label=_("Top P"))
                temperature = gr.Slider(0.01, 1.5, value=DEFAULTS["temperature"], step=0.01, label=_("Temperature"))
        for slider in (max_length, top_p, temperature):
            # gradio's own range check fails with a server traceback on a value it cannot compare (an API
            # call's None or text); respond() checks every setting and answers with one line instead
            slider.preprocess = lambda payload: payload
        inputs = [user_input, chatbot, history, max_length, top_p, temperature]
        outputs = [chatbot, history, user_input]
        submit.click(on_submit, inputs, outputs, concurrency_limit=1)
        user_input.submit(on_submit, inputs, outputs, concurrency_limit=1)
        clear.click(lambda: ([], []), None, [chatbot, history], queue=False)
    return demo


def build_parser():
    from glmcourse.cli import MODEL_DIR, CourseParser

    parser = CourseParser(prog="python -m glmcourse.web_demo", description=_(
        "Lesson 03: chat with a ChatGLM model in the browser (the seed's web_demo.py, with gradio)."))
    parser.add_argument("--model", default=None, kind=MODEL_DIR, help=_("model folder (default: the course model)"))
    parser.add_argument("--host", default="127.0.0.1", help=_("address to bind (default 127.0.0.1: this machine only)"))
    parser.add_argument("--port", type=port_arg("--port"), default=7860, help=_("port, 1-65535 (default 7860)"))
    parser.add_argument("--max_new_tokens", type=int_arg("--max_new_tokens", 1, 2**20, example=128), default=None,
                        help=_("at most this many reply tokens, >= 1 (default: whatever fits Maximum length)"))
    parser.add_argument("--trust_remote_code", action="store_true",
                        help=_("allow the model folder's own Python code to run (off by default; the course model "
                             "needs none). Read that code first."))
    return parser


def parse_args(argv=None):
    return build_parser().parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        import gradio  # noqa: F401
    except ImportError:
        print(_("web_demo needs gradio, the `web` extra: pip install -e '.[web]'"), file=sys.stderr)
        return 2
    try:
        if ":" in args.host:
            raise UsageError(_("--host {host}: IPv6 addresses are not supported by the web demo (gradio serves "
                               "IPv4); use 127.0.0.1 (this machine only), or 0.0.0.0 for every IPv4 address.",
                               host=args.host))
        check_port_free(args.host, args.port)
    except UsageError as err:
        print(f"web_demo: {err}", file=sys.stderr)
        return 2
    if not is_loopback(args.host):
        print(_("web_demo: warning: --host {host} makes the page reachable from other machines on the "
                "network, with no password; leave --host out (127.0.0.1) to keep it on this machine.", host=args.host),
              file=sys.stderr, flush=True)
    from glmcourse.loading import load_chat_model

    try:
        tokenizer, model = load_chat_model(args.model, trust_remote_code=args.trust_remote_code, flag="--model")
    except (FileNotFoundError, OSError, ValueError) as err:
        print(_("web_demo: cannot load the model: {error}", error=err), file=sys.stderr)
        return 2
    demo = build_demo(model, tokenizer, max_new_tokens=args.max_new_tokens)
    try:  # quiet: no "To create a public link, set share=True" (the course never makes one)
        demo.queue().launch(server_name=args.host, server_port=args.port, share=False, inbrowser=False,
                            show_error=True, ssr_mode=False, mcp_server=False, pwa=False, quiet=True,
                            prevent_thread_lock=True)
    except OSError as err:  # the port was taken between the check and the start
        print(_("web_demo: cannot serve on {host}:{port} ({reason}); pass another --port.", host=args.host,
                port=args.port, reason=one_line(err)), file=sys.stderr)
        return 2
    shown_host = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
    print(f"* Running on local URL:  http://{shown_host}:{args.port}", flush=True)
    print(_("* Stop the server with Ctrl-C."), flush=True)
    try:
        demo.block_thread()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
