"""Shared inputs of the vLLM tests (this folder is not named `vllm`: on sys.path it would shadow the package)."""

QUESTIONS = [
    "How many shapes are in the picture?",
    "What colour is the circle? Options: A. red B. blue C. green",
    "When is the square visible? Answer in seconds.",
    "Locate the triangle and give its box.",
    "Read the word in the image.",
    "What is 3 + 4?",
]
