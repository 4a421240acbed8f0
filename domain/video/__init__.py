"""Video consultations: one live room per video appointment at OpenVidu (the LiveKit server
API) or, when it fails, Jitsi; join tokens by role within the clinic's join window; a virtual
waiting room that moves the appointment through its lifecycle; recordings with consent.

Provider secrets go through tenancy's credentials store; provider webhooks through the one
inbox (domain/inbox)."""

# Importing the package registers video's handlers with scheduling (a cancelled, no-show or
# expired video appointment ends its call), as domain/queueing/__init__.py does; piccolo_conf
# imports every app's package, so every process that runs commands has them.
from domain.video.commands import consultation as _consultation  # noqa: F401
