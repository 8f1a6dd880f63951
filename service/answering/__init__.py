"""The answering library: question -> retrieval -> reading -> cited answer -> conversation.

``engine.Engine`` is the one entry point; the HTTP app (``service.web``) and the CLI only call it and
``chat.ChatService``.
"""
