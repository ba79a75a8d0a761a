"""llama-cpp-python's OpenAI-compatible server with one extra chat format, run from .venv-llm by
scripts/llm-local.sh (not part of leadgw's packages).

``leadgw-gemma3`` is Gemma 3's own chat template. llama-cpp-python's built-in "gemma" format drops
the system message (Gemma has no system role), which would drop the summary's rules; Gemma 3's
published template instead puts the system text at the head of the first user turn."""

from __future__ import annotations

from typing import Any

from llama_cpp import llama_chat_format
from llama_cpp.server.__main__ import main

_TURN_END = "<end_of_turn>\n"


@llama_chat_format.register_chat_format("leadgw-gemma3")
def format_gemma3(
    messages: list[dict[str, Any]], **kwargs: Any
) -> llama_chat_format.ChatFormatterResponse:
    system = "\n\n".join(str(m["content"]) for m in messages if m["role"] == "system")
    prompt = ""
    for message in (m for m in messages if m["role"] != "system"):
        role = "model" if message["role"] == "assistant" else "user"
        content = str(message["content"] or "")
        if system and role == "user":
            content, system = f"{system}\n\n{content}", ""
        prompt += f"<start_of_turn>{role}\n{content}{_TURN_END}"
    prompt += "<start_of_turn>model\n"
    return llama_chat_format.ChatFormatterResponse(prompt=prompt, stop=["<end_of_turn>"])


if __name__ == "__main__":
    main()
