"""Run: the scheduler takes a plan's shots through create, poll and download within the account's limits.

``scheduler`` drives each shot; ``options`` and ``limits`` hold the run's policy (slots, rate, the one retry policy);
``polling`` and ``watcher`` follow tasks to their end; ``reachability`` tells a provider that is down; ``recorder``
writes each state change to the store and emits its event (``events``); ``adopt`` attaches a task by hand.
"""
