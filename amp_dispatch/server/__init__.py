"""
The dispatcher process: its configuration, its listeners (role, endpoint,
connection caps) and the service that runs them over a store.
"""
