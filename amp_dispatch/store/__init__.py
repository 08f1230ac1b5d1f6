"""
Where the workers live: the store interface the listeners' protocols call,
and its implementations (today the in-memory store).
"""
