"""`satori eval`: VLMEvalKit on a SATORI checkpoint (and the base model), scored honestly.

Light modules (names, plan, results) import no heavy library; `model` and `worker` import
VLMEvalKit and torch and run only inside the evaluation processes.
"""
