"""Byte-level BPE (GPT-2 / RoBERTa style) trained with the `tokenizers` library.

Special tokens, with fixed ids: `<s>` 0 (begin), `<pad>` 1, `</s>` 2 (end and separator), `<unk>`
3 (never produced: every byte has a token), `<mask>` 4; learned merges follow. No normalization
and no prefix space, so `decode(encode(x)) == x` for any text. The post-processor adds RoBERTa's
specials: `<s> a </s>` for one text and `<s> a </s></s> b </s>` for a pair (pass
`add_special_tokens=False` to get the bare tokens, as the corpus packing does). Text that spells a
special token ("</s>" in a document) is encoded as ordinary text: `encode_special_tokens` is set
on every tokenizer returned here (the setting is not saved in tokenizer.json, so load with
`load_tokenizer`).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

from d2v.atomic import atomic_path

if TYPE_CHECKING:  # tokenizers loads at prepare time only: the training stages read token ids
    from tokenizers import Tokenizer

log = logging.getLogger(__name__)

SPECIAL_TOKENS: tuple[str, ...] = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")
BOS_ID, PAD_ID, EOS_ID, UNK_ID, MASK_ID = range(len(SPECIAL_TOKENS))


def new_tokenizer() -> Tokenizer:
    """An untrained byte-level BPE tokenizer with RoBERTa's pre/post-processing."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors

    tokenizer = Tokenizer(models.BPE(unk_token="<unk>", fuse_unk=False))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.RobertaProcessing(
        ("</s>", EOS_ID), ("<s>", BOS_ID), trim_offsets=False, add_prefix_space=False
    )
    return tokenizer


def train_bpe(texts: Iterable[str], vocab_size: int, min_frequency: int = 2) -> Tokenizer:
    """Train byte-level BPE on `texts` to at most `vocab_size` tokens (specials and the 256 byte
    tokens included; fewer if the corpus runs out of pairs seen `min_frequency` times)."""
    from tokenizers import pre_tokenizers, trainers

    if vocab_size < len(SPECIAL_TOKENS) + 256:
        raise ValueError(f"vocab_size {vocab_size} is below the 261 special and byte tokens")
    tokenizer = new_tokenizer()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    start = time.perf_counter()
    tokenizer.train_from_iterator(texts, trainer=trainer)
    log.info(
        "trained byte-level BPE: %d tokens in %.1f s",
        tokenizer.get_vocab_size(),
        time.perf_counter() - start,
    )
    tokenizer.encode_special_tokens = True
    for i, token in enumerate(SPECIAL_TOKENS):
        assert tokenizer.token_to_id(token) == i, f"special token {token} is not id {i}"
    return tokenizer


def save_tokenizer(tokenizer: Tokenizer, path: str | os.PathLike) -> None:
    """Write `tokenizer.json` atomically."""
    with atomic_path(path) as tmp:
        tokenizer.save(str(tmp))
