"""Lesson 03: chat with a ChatGLM model in the browser (the seed's web_demo.py, with gradio).

    python -m glmcourse.web_demo [--model PATH] [--host 127.0.0.1] [--port 7860]

A chat box, Submit and Clear History buttons, and sliders for Maximum length, Top P and
Temperature. Answers stream in and are rendered as markdown (code blocks included). The page is
served on 127.0.0.1 only, unless ``--host`` says otherwise; there are no share links, no analytics,
and every asset (fonts included) comes from the local gradio package.
Needs the ``web`` extra: ``pip install -e '.[web]'``.
"""
from __future__ import annotations

import argparse
import os
import sys

# Before gradio is imported: it reads this once, and would otherwise report usage over the network.
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

from glmcourse.chat import load_chat_model, stream_chat  # noqa: E402

TITLE = "ChatGLM 课程模型"
DEFAULTS = {"max_length": 2048, "top_p": 0.7, "temperature": 0.95}  # ChatGLM-6B's web demo


def respond(model, tokenizer, query: str, messages: list, history: list, max_length, top_p, temperature):
    """Stream one answer into the chat box. Yields ``(messages, history, textbox_value)``.

    ``messages`` is what gradio shows (role/content dicts); ``history`` is what ``stream_chat``
    needs, a list of (query, response) pairs. An empty query changes nothing.
    """
    if not query or not query.strip():
        yield messages, history, query
        return
    asked = list(messages) + [{"role": "user", "content": query}]
    yield asked + [{"role": "assistant", "content": ""}], history, ""
    for response, new_history in stream_chat(model, tokenizer, query, history, max_length=int(max_length),
                                             top_p=float(top_p), temperature=float(temperature)):
        yield asked + [{"role": "assistant", "content": response}], new_history, ""


def build_demo(model, tokenizer):
    """The gradio Blocks app (not launched)."""
    import gradio as gr

    limit = getattr(model.config, "max_sequence_length", None)
    note = f"prompt + answer tokens; this model was trained up to {limit}" if limit else "prompt + answer tokens"

    def on_submit(query, messages, history, max_length, top_p, temperature):
        yield from respond(model, tokenizer, query, messages, history, max_length, top_p, temperature)

    with gr.Blocks(title=TITLE, analytics_enabled=False) as demo:
        gr.Markdown(f"# {TITLE}\nThe seed's web demo on the course model. Answers stream and render as markdown.")
        chatbot = gr.Chatbot(label="ChatGLM", height=420, render_markdown=True, elem_id="chatbot")
        history = gr.State([])
        with gr.Row():
            with gr.Column(scale=4):
                user_input = gr.Textbox(show_label=False, placeholder="输入消息 / type a message", lines=3,
                                        elem_id="user_input")
                submit = gr.Button("Submit", variant="primary", elem_id="submit")
            with gr.Column(scale=1):
                clear = gr.Button("Clear History", elem_id="clear")
                max_length = gr.Slider(16, 4096, value=DEFAULTS["max_length"], step=1, label="Maximum length",
                                       info=note)
                top_p = gr.Slider(0.01, 1.0, value=DEFAULTS["top_p"], step=0.01, label="Top P")
                temperature = gr.Slider(0.01, 1.5, value=DEFAULTS["temperature"], step=0.01, label="Temperature")
        inputs = [user_input, chatbot, history, max_length, top_p, temperature]
        outputs = [chatbot, history, user_input]
        submit.click(on_submit, inputs, outputs, concurrency_limit=1)
        user_input.submit(on_submit, inputs, outputs, concurrency_limit=1)  # Enter also sends (Shift+Enter: newline)
        clear.click(lambda: ([], []), None, [chatbot, history], queue=False)
    return demo


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m glmcourse.web_demo", description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=None, help="model folder (default: the course model)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        import gradio  # noqa: F401
    except ImportError:
        print("web_demo needs gradio, the `web` extra: pip install -e '.[web]'", file=sys.stderr)
        return 2
    try:
        tokenizer, model = load_chat_model(args.model)
    except (FileNotFoundError, OSError, ValueError) as err:
        print(f"web_demo: cannot load the model: {err}", file=sys.stderr)
        return 2
    demo = build_demo(model, tokenizer)
    demo.queue().launch(server_name=args.host, server_port=args.port, share=False, inbrowser=False,
                        show_error=True, ssr_mode=False, mcp_server=False, pwa=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
