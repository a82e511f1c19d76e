"""The patient's words the service may still need: audio sent on the current link and not yet
closed into a turn (sent again first after a reconnect, so nothing said is lost), and the
last closed turn until its answer starts (asked again after a reconnect, so a question is
never left without an answer). Bounded; owned by the conversation's loop (no locks)."""

from __future__ import annotations

from kiosk.session.protocol import SAMPLE_RATE_HZ, pcm_ms

BYTES_PER_MS = SAMPLE_RATE_HZ * 2 // 1000  # PCM16 mono


class ReplayBuffer:
    """Appends are not acknowledged: when a link dies, whatever was in flight is lost with the
    service's uncommitted input buffer, so it is kept here until the service closes a turn."""

    def __init__(self, max_ms: int) -> None:
        self.max_ms = max_ms
        self._chunks: list[tuple[int, bytes]] = []  # (start ms on this link, pcm)
        self._sent_ms = 0
        self._held_ms = 0
        self.pending_turn: list[bytes] = []
        """The last closed turn's audio, kept until its answer starts (or it is dropped)."""

    def sent(self, pcm: bytes) -> None:
        ms = pcm_ms(len(pcm))
        self._chunks.append((self._sent_ms, pcm))
        self._sent_ms += ms
        self._held_ms += ms
        while self._held_ms > self.max_ms and len(self._chunks) > 1:
            self._held_ms -= pcm_ms(len(self._chunks.pop(0)[1]))

    def committed(self, audio_end_ms: int) -> None:
        """The service closed a turn at `audio_end_ms` of this link's audio: that audio becomes
        the pending turn until its answer starts."""
        turn = []
        while self._chunks and self._chunks[0][0] < audio_end_ms:
            start, pcm = self._chunks.pop(0)
            # A chunk (a 100 ms frame, or a bigger backlog piece) can straddle the turn's end:
            # its head is the question's last words, its tail what followed. Split it, or a
            # reconnect would send the question's end again as new speech.
            cut = min(len(pcm), (audio_end_ms - start) * BYTES_PER_MS)
            if cut < len(pcm):
                self._chunks.insert(0, (audio_end_ms, pcm[cut:]))
            self._held_ms -= pcm_ms(cut)
            turn.append(pcm[:cut])
        self.pending_turn = turn
        while sum(pcm_ms(len(c)) for c in self.pending_turn) > self.max_ms and len(
                self.pending_turn) > 1:
            self.pending_turn.pop(0)

    def answered(self) -> None:
        """The pending turn's answer started (or the patient moved on): forget it."""
        self.pending_turn = []

    def take(self) -> list[bytes]:
        """Uncommitted audio to resend on a new link (whose timeline starts at 0 again)."""
        chunks = [pcm for _, pcm in self._chunks]
        self._chunks.clear()
        self._sent_ms = self._held_ms = 0
        return chunks
