"""The Socket.IO hub (connect-time auth, rooms, emitting, resume, Redis manager).

Not built yet: it arrives with the live-backbone issue. Nothing here is on the public surface.
"""
