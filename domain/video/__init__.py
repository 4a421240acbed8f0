"""Video consultations: one live room per video appointment at OpenVidu (the LiveKit server
API) or, when it fails, Jitsi; join tokens by role within the clinic's join window; a virtual
waiting room that moves the appointment through its lifecycle; recordings with consent.

Provider secrets go through tenancy's credentials store; provider webhooks through the one
inbox (domain/inbox)."""
