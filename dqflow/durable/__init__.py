"""Durable handlers: memoised steps, waits that free the worker, tokens completed from outside.

``model`` holds the typed shapes storage hands back (``JobStep``, ``JobWait``,
``TokenRecord``); ``context`` the handler side (``ctx.step``, ``ctx.sleep``,
``ctx.create_token``, ``ctx.wait_for_token``); ``tokens`` the producer side
(completing a token against its schema). docs/DURABLE.md explains the whole.
"""
