"""Chat templates (Jinja, as Hugging Face tokenizers render them) shared by synthesis, which
renders prompts, and the trainer, which renders training text and locates supervised spans."""

# ChatML, the default named template (the tiny tokenizer ships CHATML_GENERATION, which renders
# the same text).
CHATML = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# ChatML with {% generation %} markers around each assistant turn's content and its <|im_end|>
# (the newline after <|im_end|> stays outside, i.e. unsupervised, like the trainer's labels), for
# trainers that find assistant tokens by these markers (TRL's assistant_only_loss). It renders
# text byte-identical to CHATML. The newline after {% endgeneration %} is an expression because
# transformers renders templates with trim_blocks=True, which would eat a literal one.
CHATML_GENERATION = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['role'] == 'assistant' %}{% generation %}{{ message['content'] }}<|im_end|>{% endgeneration %}{{ '\\n' }}"
    "{% else %}{{ message['content'] }}<|im_end|>\n{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

TEMPLATES = {"chatml": CHATML}
