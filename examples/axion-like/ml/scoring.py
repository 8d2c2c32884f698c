"""Bag-of-words vectors, cosine similarity and a ranked top-k, with numpy."""

from __future__ import annotations

import re

import numpy as np

_WORD = re.compile(r"[a-z0-9]+")


def vectorise(texts: list[str]) -> tuple[np.ndarray, list[str]]:
    vocabulary = sorted({w for text in texts for w in _WORD.findall(text.lower())})
    index = {word: i for i, word in enumerate(vocabulary)}
    matrix = np.zeros((len(texts), len(vocabulary)), dtype=np.float64)
    for row, text in enumerate(texts):
        for word in _WORD.findall(text.lower()):
            matrix[row, index[word]] += 1.0
    return matrix, vocabulary


def cosine(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    unit = np.divide(matrix, norms, out=np.zeros_like(matrix), where=norms > 0)
    return unit @ unit.T


def top_k(query: str, documents: list[str], k: int = 3) -> list[tuple[int, float]]:
    """(document index, similarity) of the k documents most like `query`, best first."""
    if not documents:
        return []
    similarity = cosine(vectorise([query, *documents])[0])[0, 1:]
    order = np.argsort(-similarity, kind="stable")[:k]
    return [(int(i), round(float(similarity[i]), 4)) for i in order]
