"""The SIP transaction layer (RFC 3261 §17, RFC 6026), sans-IO, with a fake clock."""

from __future__ import annotations

import random

import pytest

from pyim.sip.message import SipRequest, SipResponse
from pyim.sip.parser import parse_message
from pyim.sip.transaction import (
    AckReceived,
    ClientTransaction,
    Destination,
    Event,
    MessageDiscarded,
    Outgoing,
    RequestReceived,
    ResponseReceived,
    ServerTransaction,
    StrayResponse,
    TimerConfig,
    TransactionLayer,
    TransactionState,
    TransactionStateError,
    TransactionTerminated,
    TransactionTimeout,
    TransportError,
    build_cancel,
    new_branch,
    response_destination,
)

S = TransactionState
T1, T2, T4 = 0.5, 4.0, 5.0
UDP_PEER = Destination("udp", "10.0.0.2", 5060)
TCP_PEER = Destination("tcp", "10.0.0.2", 5060, conn_id=7)
UAC = Destination("udp", "10.0.0.1", 5060)  # where requests come from in server tests
UAC_TCP = Destination("tcp", "10.0.0.1", 40000, conn_id=3)


def make_request(
    method: str = "INVITE",
    *,
    branch: str | None = "z9hG4bKaaa1",
    via_host: str = "10.0.0.1",
    via_port: int | None = 5060,
    transport: str = "UDP",
    via_params: str = "",
    to_tag: str | None = None,
    cseq: int = 1,
    cseq_method: str | None = None,
    call_id: str = "call-1@10.0.0.1",
    from_tag: str = "ft1",
    uri: str = "sip:bob@10.0.0.2",
    routes: tuple[str, ...] = (),
    extra: tuple[str, ...] = (),
) -> SipRequest:
    via = f"SIP/2.0/{transport} {via_host}" + (f":{via_port}" if via_port else "")
    if branch:
        via += f";branch={branch}"
    via += via_params
    to = "<sip:bob@example.com>" + (f";tag={to_tag}" if to_tag else "")
    lines = [
        f"{method} {uri} SIP/2.0",
        f"Via: {via}",
        "Max-Forwards: 70",
        *(f"Route: {r}" for r in routes),
        f'From: "Alice" <sip:alice@example.com>;tag={from_tag}',
        f"To: {to}",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} {cseq_method or method}",
        *extra,
        "Content-Length: 0",
        "",
        "",
    ]
    msg = parse_message("\r\n".join(lines).encode())
    assert isinstance(msg, SipRequest)
    return msg


def wire(message: SipRequest | SipResponse) -> SipRequest | SipResponse:
    """What the peer gets: the message through encode and parse."""
    return parse_message(message.encode())


def response_to(request: SipRequest, status: int, to_tag: str | None = "tt9") -> SipResponse:
    resp = wire(request.response(status, to_tag=to_tag if status > 100 else None))
    assert isinstance(resp, SipResponse)
    return resp


class Harness:
    """A layer, a fake clock and a log of everything sent (with the time)."""

    def __init__(self, timers: TimerConfig | None = None, **kwargs: object) -> None:
        self.layer = TransactionLayer(timers or TimerConfig(), **kwargs)  # type: ignore[arg-type]
        self.now = 1000.0
        self.sent: list[tuple[float, Outgoing]] = []
        self.events: list[tuple[float, Event]] = []

    def _collect(self, events: list[Event]) -> list[Event]:
        self.events.extend((self.now, e) for e in events)
        self.sent.extend((self.now, o) for o in self.layer.outgoing())
        return events

    def receive(self, message: SipRequest | SipResponse, source: Destination) -> list[Event]:
        return self._collect(self.layer.receive(message, source, self.now))

    def send(self, request: SipRequest, dest: Destination = UDP_PEER) -> ClientTransaction:
        tx = self.layer.send_request(request, dest, self.now)
        self._collect([])
        return tx

    def respond(self, tx: ServerTransaction, response: SipResponse) -> None:
        tx.respond(response, self.now)
        self._collect([])

    def advance(self, seconds: float) -> list[Event]:
        """Run every timer up to now + seconds, in order, at its own time."""
        end = self.now + seconds
        out: list[Event] = []
        for _ in range(1_000_000):
            when = self.layer.next_timeout()
            if when is None or when > end:
                break
            self.now = max(self.now, when)
            out += self._collect(self.layer.handle_timeout(self.now))
        self.now = end
        return out

    def take_sent(self) -> list[tuple[float, Outgoing]]:
        sent, self.sent = self.sent, []
        return sent

    def sent_times(self, start: float = 1000.0) -> list[float]:
        return [round(t - start, 6) for t, _ in self.take_sent()]


def events_of(events: list[Event], kind: type[Event]) -> list[Event]:
    return [e for e in events if isinstance(e, kind)]


def server_invite(h: Harness, request: SipRequest, source: Destination = UAC) -> ServerTransaction:
    events = h.receive(request, source)
    [ev] = events_of(events, RequestReceived)
    assert isinstance(ev, RequestReceived)
    return ev.transaction


# -- helpers --------------------------------------------------------------------------------


def test_new_branch_has_magic_cookie_and_injectable_randomness() -> None:
    a = new_branch(random.Random(1).getrandbits)
    b = new_branch(random.Random(1).getrandbits)
    assert a == b and a.startswith("z9hG4bK") and len(a) == 7 + 16
    assert new_branch() != new_branch()
    layer = TransactionLayer(randbits=random.Random(2).getrandbits)
    assert layer.new_branch() == new_branch(random.Random(2).getrandbits)


def test_destination_reliability() -> None:
    assert not UDP_PEER.reliable
    assert TCP_PEER.reliable and Destination("tls", "h", 5061).reliable


# -- INVITE client --------------------------------------------------------------------------


def test_timer_a_doubles_and_timer_b_times_out_over_udp() -> None:
    h = Harness()
    tx = h.send(make_request())
    assert tx.state is S.CALLING
    events = h.advance(40)
    # sent at 0, then timer A: 0.5, 1.5, 3.5, 7.5, 15.5, 31.5 (intervals 0.5, 1, 2, 4, 8, 16)
    assert h.sent_times() == [0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    [timeout] = events_of(events, TransactionTimeout)
    assert isinstance(timeout, TransactionTimeout)
    assert timeout.timer == "B" and timeout.transaction is tx
    assert h.events[-2][0] - 1000 == pytest.approx(64 * T1)
    assert isinstance(events[-1], TransactionTerminated)
    assert tx.state is S.TERMINATED and len(h.layer) == 0 and h.layer.next_timeout() is None


def test_timer_a_is_not_used_over_reliable_transport() -> None:
    h = Harness()
    tx = h.send(make_request(transport="TCP"), TCP_PEER)
    h.advance(31.9)
    assert h.sent_times() == [0]
    assert not h.events
    events = h.advance(0.2)
    assert [type(e) for e in events] == [TransactionTimeout, TransactionTerminated]
    assert tx.terminated


def test_timer_a_with_other_t1() -> None:
    h = Harness(TimerConfig(T1=0.1))
    h.send(make_request())
    h.advance(100)
    assert h.sent_times() == [0, 0.1, 0.3, 0.7, 1.5, 3.1, 6.3]  # B at 6.4


def test_provisional_stops_retransmissions_and_timer_b() -> None:
    h = Harness()
    req = make_request()
    tx = h.send(req)
    h.advance(0.6)
    events = h.receive(response_to(req, 180), UDP_PEER)
    assert [type(e) for e in events] == [ResponseReceived]
    assert tx.state is S.PROCEEDING
    h.take_sent()
    assert h.layer.next_timeout() is None
    assert h.advance(100) == [] and h.take_sent() == []


def test_non_2xx_final_generates_ack_and_timer_d_udp() -> None:
    h = Harness()
    req = make_request(routes=("<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>"))
    tx = h.send(req)
    h.receive(response_to(req, 100), UDP_PEER)
    h.take_sent()
    resp = response_to(req, 486)
    events = h.receive(resp, UDP_PEER)
    assert [type(e) for e in events] == [ResponseReceived]
    assert tx.state is S.COMPLETED
    [(_, out)] = h.take_sent()
    ack = out.message
    assert isinstance(ack, SipRequest)
    assert out.destination == UDP_PEER and out.transaction is tx and out.data == ack.encode()
    # §17.1.1.3
    assert ack.method == "ACK" and str(ack.uri) == str(req.uri)
    assert ack.headers.get_all("Via") == [str(req.top_via)] and ack.branch == req.branch
    assert ack.to.tag == "tt9"
    assert ack.from_.tag == "ft1" and ack.call_id == req.call_id
    assert (ack.cseq.seq, ack.cseq.method) == (1, "ACK")
    assert ack.headers.get_all("Route") == req.headers.get_all("Route")
    assert ack.body == b""
    # the ACK parses back
    assert isinstance(wire(ack), SipRequest)
    # a retransmitted 486 gets the same ACK again, and is not passed up
    assert h.receive(resp, UDP_PEER) == []
    [(_, again)] = h.take_sent()
    assert again.data == out.data
    # timer D: 32 s over UDP
    assert h.layer.next_timeout() == pytest.approx(h.now + 32)
    assert h.advance(31.9) == []
    events = h.advance(0.2)
    assert [type(e) for e in events] == [TransactionTerminated]
    assert len(h.layer) == 0


def test_timer_d_is_zero_over_reliable_transport() -> None:
    h = Harness()
    req = make_request(transport="TCP")
    tx = h.send(req, TCP_PEER)
    h.receive(response_to(req, 603), TCP_PEER)
    assert tx.state is S.COMPLETED
    assert h.layer.next_timeout() == h.now
    events = h.advance(0)
    assert [type(e) for e in events] == [TransactionTerminated]
    assert h.layer.client_count == 0


def test_2xx_is_not_acked_and_accepted_state_passes_retransmissions_up() -> None:
    h = Harness()
    req = make_request()
    tx = h.send(req)
    h.take_sent()
    ok = response_to(req, 200)
    events = h.receive(ok, UDP_PEER)
    assert [type(e) for e in events] == [ResponseReceived]
    assert tx.state is S.ACCEPTED
    assert h.take_sent() == []  # no ACK: the TU's job
    h.advance(5)
    assert h.take_sent() == []  # and no retransmission of the INVITE
    # 2xx retransmission (or a forked 2xx) goes up too (RFC 6026 §8.4)
    events = h.receive(ok, UDP_PEER)
    assert [type(e) for e in events] == [ResponseReceived]
    assert h.take_sent() == []
    # a late 486 is absorbed
    assert h.receive(response_to(req, 486), UDP_PEER) == []
    # timer M: 64*T1 after the first 2xx
    events = h.advance(64 * T1 - 5 - 0.01)
    assert events == []
    events = h.advance(0.02)
    assert [type(e) for e in events] == [TransactionTerminated]
    # afterwards a 2xx is stray: the dialog layer re-ACKs it
    events = h.receive(ok, UDP_PEER)
    assert [type(e) for e in events] == [StrayResponse]


def test_accepted_client_invite_is_packed_and_unpacks_equal() -> None:
    h = Harness()
    req = make_request()
    tx = h.send(req)
    ok = response_to(req, 200)
    h.receive(ok, UDP_PEER)
    h.layer.handle_timeout(h.now)  # any next input packs what got its final response
    assert tx._packed is not None
    assert tx._packed[1] == (False, ok.encode())  # received as is: its bytes alone
    assert tx.last_response == ok and tx.request == req
    assert tx._packed is None  # read again: unpacked (and kept so)
    # a retransmitted (or forked) 2xx still goes up and becomes the last response
    forked = response_to(req, 200, to_tag="tt8")
    events = h.receive(forked, UDP_PEER)
    assert [type(e) for e in events] == [ResponseReceived]
    assert tx.last_response == forked
    h.layer.handle_timeout(h.now)
    assert tx._packed is not None and tx.last_response == forked and tx.request == req
    events = h.advance(64 * T1)
    assert [type(e) for e in events] == [TransactionTerminated]


def test_server_invite_is_packed_without_the_bytes_its_via_stamp_made_stale() -> None:
    h = Harness()
    as_sent = server_invite(h, make_request(branch="z9hG4bKp1"))
    h.respond(as_sent, as_sent.request.response(200, to_tag="x1"))
    stamped = server_invite(h, make_request(branch="z9hG4bKp2", via_params=";rport"))
    request = stamped.request  # its top Via got the rport value: changed since parsed
    response = request.response(200, to_tag="x2")
    h.respond(stamped, response)
    h.layer.handle_timeout(h.now)
    assert as_sent._packed is not None and len(as_sent._packed[0]) == 2  # bytes alone
    assert stamped._packed is not None and len(stamped._packed[0]) == 8
    assert stamped._packed[0][5] is None
    assert stamped.request == request and stamped.request.encode() == request.encode()
    assert stamped.last_response == response and stamped.last_data == response.encode()


def test_response_with_foreign_sent_by_is_discarded() -> None:
    h = Harness()
    req = make_request()
    h.send(req)
    other = make_request(via_host="10.9.9.9")
    events = h.receive(response_to(other, 200), UDP_PEER)
    assert [type(e) for e in events] == [MessageDiscarded]


def test_response_matching_uses_branch_and_cseq_method() -> None:
    h = Harness()
    req = make_request()
    h.send(req)
    cancel_like = make_request("CANCEL")  # same branch, other method
    events = h.receive(response_to(cancel_like, 200), UDP_PEER)
    assert [type(e) for e in events] == [StrayResponse]
    assert h.layer.find_client("z9hG4bKaaa1", "INVITE") is not None


# -- non-INVITE client ----------------------------------------------------------------------


def test_timer_e_capped_at_t2_and_timer_f() -> None:
    h = Harness()
    tx = h.send(make_request("OPTIONS"))
    assert tx.state is S.TRYING
    events = h.advance(40)
    # 0.5, 1, 2, 4, then 4 (T2) ... until F at 32
    assert h.sent_times() == [0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert [type(e) for e in events] == [TransactionTimeout, TransactionTerminated]
    timeout = events[0]
    assert isinstance(timeout, TransactionTimeout) and timeout.timer == "F"
    assert timeout.transaction.request.method == "OPTIONS"  # the TU makes its 408 from this


def test_timer_e_after_provisional_is_t2() -> None:
    h = Harness()
    req = make_request("MESSAGE")
    tx = h.send(req)
    h.advance(0.2)
    h.receive(response_to(req, 100), UDP_PEER)
    assert tx.state is S.PROCEEDING
    h.advance(20)
    assert h.sent_times() == [0, 0.5, 4.5, 8.5, 12.5, 16.5]


def test_timer_e_not_used_over_reliable_and_timer_k() -> None:
    h = Harness()
    req = make_request("BYE", transport="TCP")
    tx = h.send(req, TCP_PEER)
    h.advance(5)
    assert h.sent_times() == [0]
    events = h.receive(response_to(req, 200), TCP_PEER)
    assert [type(e) for e in events] == [ResponseReceived] and tx.state is S.COMPLETED
    assert h.layer.next_timeout() == h.now  # K = 0
    assert [type(e) for e in h.advance(0)] == [TransactionTerminated]


def test_timer_k_is_t4_over_udp_and_final_retransmissions_are_absorbed() -> None:
    h = Harness()
    req = make_request("REGISTER")
    tx = h.send(req)
    ok = response_to(req, 200)
    assert [type(e) for e in h.receive(ok, UDP_PEER)] == [ResponseReceived]
    h.take_sent()
    assert h.receive(ok, UDP_PEER) == []
    assert h.advance(T4 - 0.01) == [] and h.take_sent() == []
    assert [type(e) for e in h.advance(0.02)] == [TransactionTerminated]
    assert tx.terminated and len(h.layer) == 0


def test_send_request_validation() -> None:
    h = Harness()
    with pytest.raises(ValueError):
        h.send(make_request("ACK"))
    with pytest.raises(ValueError):
        h.send(make_request(branch=None))
    h.send(make_request())
    with pytest.raises(TransactionStateError):
        h.send(make_request())


# -- INVITE server --------------------------------------------------------------------------


def test_100_trying_after_200_ms() -> None:
    h = Harness()
    tx = server_invite(h, make_request())
    assert tx.state is S.PROCEEDING and h.take_sent() == []
    h.advance(0.19)
    assert h.take_sent() == []
    h.advance(0.02)
    [(t, out)] = h.take_sent()
    assert t == pytest.approx(1000.2)
    assert isinstance(out.message, SipResponse) and out.message.status == 100
    assert out.message.to.tag is None


def test_100_trying_immediate_or_never() -> None:
    h = Harness(TimerConfig(trying_delay=0))
    server_invite(h, make_request(extra=("Timestamp: 54",)))
    [(_, out)] = h.take_sent()
    assert isinstance(out.message, SipResponse) and out.message.status == 100
    assert out.message.headers.get("Timestamp") == "54"
    h = Harness(TimerConfig(trying_delay=None))
    server_invite(h, make_request())
    h.advance(10)
    assert h.take_sent() == []


def test_tu_response_within_200_ms_suppresses_100() -> None:
    h = Harness()
    req = make_request()
    tx = server_invite(h, req)
    h.advance(0.1)
    h.respond(tx, req.response(180, to_tag="x"))
    h.advance(1)
    sent = h.take_sent()
    assert [o.message.status for _, o in sent if isinstance(o.message, SipResponse)] == [180]


def test_invite_retransmission_before_final_resends_provisional() -> None:
    h = Harness()
    req = make_request()
    tx = server_invite(h, req)
    # before any provisional: the retransmission is answered with 100 at once
    assert h.receive(make_request(), UAC) == []
    [(_, out)] = h.take_sent()
    assert isinstance(out.message, SipResponse) and out.message.status == 100
    h.advance(1)
    assert h.take_sent() == []  # the delayed 100 was cancelled
    h.respond(tx, req.response(180, to_tag="x"))
    h.take_sent()
    assert h.receive(make_request(), UAC) == []
    [(_, out)] = h.take_sent()
    assert isinstance(out.message, SipResponse) and out.message.status == 180
    assert h.layer.server_count == 1


def test_timer_g_and_h_over_udp() -> None:
    h = Harness()
    req = make_request()
    tx = server_invite(h, req)
    h.respond(tx, req.response(486, to_tag="x"))
    assert tx.state is S.COMPLETED
    events = h.advance(40)
    # G: 0.5, 1, 2, 4, 4, ... (capped at T2) until H at 32
    assert h.sent_times() == [0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert [type(e) for e in events] == [TransactionTimeout, TransactionTerminated]
    assert isinstance(events[0], TransactionTimeout) and events[0].timer == "H"
    assert [t for t, e in h.events if isinstance(e, TransactionTimeout)] == [1000 + 64 * T1]
    assert len(h.layer) == 0


def test_invite_retransmission_after_final_resends_final() -> None:
    h = Harness()
    req = make_request()
    tx = server_invite(h, req)
    h.respond(tx, req.response(404, to_tag="x"))
    h.take_sent()
    assert h.receive(make_request(), UAC) == []
    [(_, out)] = h.take_sent()
    assert isinstance(out.message, SipResponse) and out.message.status == 404
    assert h.layer.server_count == 1


def test_ack_confirms_and_timer_i_udp() -> None:
    h = Harness()
    req = make_request()
    tx = server_invite(h, req)
    h.respond(tx, req.response(486, to_tag="x"))
    h.advance(0.6)  # one G retransmission
    h.take_sent()
    ack = make_request("ACK", to_tag="x")
    assert h.receive(ack, UAC) == []  # absorbed, not for the TU
    assert tx.state is S.CONFIRMED
    assert h.receive(ack, UAC) == []  # ACK retransmission absorbed
    assert h.advance(T4 - 0.01) == []
    assert h.take_sent() == []  # G stopped
    assert [type(e) for e in h.advance(0.02)] == [TransactionTerminated]
    assert len(h.layer) == 0


def test_reliable_invite_server_no_timer_g_and_timer_i_zero() -> None:
    h = Harness()
    req = make_request(transport="TCP", via_host="10.0.0.1", via_port=40000)
    tx = server_invite(h, req, UAC_TCP)
    h.respond(tx, req.response(486, to_tag="x"))
    h.advance(10)
    assert h.sent_times() == [0]  # the 486 (it came before the 100 Trying was due), no G
    h.receive(make_request("ACK", to_tag="x", transport="TCP", via_port=40000), UAC_TCP)
    assert tx.state is S.CONFIRMED and h.layer.next_timeout() == h.now
    assert [type(e) for e in h.advance(0)] == [TransactionTerminated]


def test_timer_h_reliable() -> None:
    h = Harness(TimerConfig(trying_delay=None))
    req = make_request(transport="TCP", via_port=40000)
    tx = server_invite(h, req, UAC_TCP)
    h.respond(tx, req.response(500, to_tag="x"))
    events = h.advance(32.1)
    assert len(h.take_sent()) == 1
    assert [type(e) for e in events] == [TransactionTimeout, TransactionTerminated]


def test_2xx_accepted_absorbs_invite_retransmission_and_passes_ack() -> None:
    h = Harness(TimerConfig(trying_delay=None))
    req = make_request()
    tx = server_invite(h, req)
    ok = req.response(200, to_tag="x")
    h.respond(tx, ok)
    assert tx.state is S.ACCEPTED
    h.take_sent()
    # an INVITE retransmission is absorbed: no new transaction, nothing sent, no event
    assert h.receive(make_request(), UAC) == []
    assert h.take_sent() == [] and h.layer.server_count == 1
    # the TU retransmits its 2xx through the transaction (RFC 6026 §8.7)
    h.advance(T1)
    h.respond(tx, ok)
    assert len(h.take_sent()) == 1
    # the 2xx ACK (its own branch) goes to the TU, without a transaction
    ack = make_request("ACK", branch="z9hG4bKack2", to_tag="x")
    [ev] = h.receive(ack, UAC)
    assert isinstance(ev, AckReceived) and ev.transaction is None
    # an ACK reusing the INVITE's branch matches the Accepted transaction: also for the TU
    [ev] = h.receive(make_request("ACK", to_tag="x"), UAC)
    assert isinstance(ev, AckReceived) and ev.transaction is tx
    assert tx.state is S.ACCEPTED
    with pytest.raises(TransactionStateError):
        h.respond(tx, req.response(486, to_tag="x"))
    # timer L
    assert h.advance(64 * T1 - T1 - 0.01) == []
    assert [type(e) for e in h.advance(0.02)] == [TransactionTerminated]
    with pytest.raises(TransactionStateError):
        h.respond(tx, ok)
    # once the transaction is gone, the same INVITE is a new request (RFC 6026)
    assert [type(e) for e in h.receive(make_request(), UAC)] == [RequestReceived]


def test_ack_before_final_is_discarded() -> None:
    h = Harness()
    server_invite(h, make_request())
    [ev] = h.receive(make_request("ACK"), UAC)
    assert isinstance(ev, MessageDiscarded)


# -- non-INVITE server ----------------------------------------------------------------------


def test_non_invite_server_trying_proceeding_completed_timer_j_udp() -> None:
    h = Harness()
    req = make_request("MESSAGE")
    events = h.receive(req, UAC)
    [ev] = events
    assert isinstance(ev, RequestReceived)
    tx = ev.transaction
    assert tx.state is S.TRYING
    assert h.receive(make_request("MESSAGE"), UAC) == []  # absorbed, nothing to re-send
    h.advance(1)
    assert h.take_sent() == []  # no 100 Trying for non-INVITE
    h.respond(tx, req.response(100))
    assert tx.state is S.PROCEEDING
    h.receive(make_request("MESSAGE"), UAC)
    assert [o.message.status for _, o in h.take_sent()] == [100, 100]  # type: ignore[union-attr]
    h.respond(tx, req.response(202, to_tag="x"))
    assert tx.state is S.COMPLETED
    h.receive(make_request("MESSAGE"), UAC)
    assert [o.message.status for _, o in h.take_sent()] == [202, 202]  # type: ignore[union-attr]
    with pytest.raises(TransactionStateError):
        h.respond(tx, req.response(500))
    assert h.advance(64 * T1 - 0.01) == []
    assert [type(e) for e in h.advance(0.02)] == [TransactionTerminated]
    assert len(h.layer) == 0


def test_timer_j_is_zero_over_reliable() -> None:
    h = Harness()
    req = make_request("OPTIONS", transport="TCP", via_port=40000)
    [ev] = h.receive(req, UAC_TCP)
    assert isinstance(ev, RequestReceived)
    h.respond(ev.transaction, req.response(200, to_tag="x"))
    [(_, out)] = h.take_sent()
    assert out.destination == UAC_TCP  # same connection
    assert h.layer.next_timeout() == h.now
    assert [type(e) for e in h.advance(0)] == [TransactionTerminated]


# -- CANCEL ---------------------------------------------------------------------------------


def test_server_cancel_has_its_own_transaction_and_finds_its_invite() -> None:
    h = Harness()
    invite = make_request()
    itx = server_invite(h, invite)
    cancel = make_request("CANCEL")
    [ev] = h.receive(cancel, UAC)
    assert isinstance(ev, RequestReceived)
    ctx = ev.transaction
    assert ctx is not itx and ctx.method == "CANCEL" and not ctx.is_invite
    assert h.layer.find_cancel_target(ctx) is itx
    assert h.layer.find_cancel_target(cancel) is itx
    assert h.layer.find_cancel_target(make_request("CANCEL", branch="z9hG4bKother")) is None
    h.respond(ctx, cancel.response(200, to_tag="x"))
    h.respond(itx, invite.response(487, to_tag="x"))
    assert itx.state is S.COMPLETED and ctx.state is S.COMPLETED
    assert h.layer.server_count == 2


def test_build_cancel_follows_9_1() -> None:
    req = make_request(routes=("<sip:p1.example.com;lr>",), to_tag=None)
    cancel = build_cancel(req)
    assert cancel.method == "CANCEL" and str(cancel.uri) == str(req.uri)
    assert cancel.headers.get_all("Via") == [str(req.top_via)]
    assert cancel.call_id == req.call_id
    assert cancel.headers.get("From") == req.headers.get("From")
    assert cancel.headers.get("To") == req.headers.get("To")
    assert (cancel.cseq.seq, cancel.cseq.method) == (1, "CANCEL")
    assert cancel.headers.get_all("Route") == req.headers.get_all("Route")
    assert isinstance(wire(cancel), SipRequest)


def test_client_cancel_waits_for_provisional() -> None:
    h = Harness()
    req = make_request()
    tx = h.send(req)
    assert h.layer.cancel(tx, h.now) is None  # Calling: must wait (§9.1)
    h.take_sent()
    h.receive(response_to(req, 180), UDP_PEER)
    ctx = tx.cancel_transaction
    assert ctx is not None and ctx.method == "CANCEL" and ctx.state is S.TRYING
    [(_, out)] = h.take_sent()
    assert isinstance(out.message, SipRequest) and out.message.method == "CANCEL"
    assert out.message.branch == req.branch
    assert h.layer.cancel(tx, h.now) is ctx  # idempotent
    # 200 for the CANCEL and 487 for the INVITE go to their own transactions
    [ev] = h.receive(response_to(ctx.request, 200), UDP_PEER)
    assert isinstance(ev, ResponseReceived) and ev.transaction is ctx
    events = h.receive(response_to(req, 487), UDP_PEER)
    assert isinstance(events[0], ResponseReceived) and events[0].transaction is tx
    assert tx.state is S.COMPLETED


def test_client_cancel_in_proceeding_and_cancel_wait_timeout() -> None:
    h = Harness()
    req = make_request()
    tx = h.send(req)
    h.receive(response_to(req, 180), UDP_PEER)
    ctx = h.layer.cancel(tx, h.now)
    assert ctx is not None
    h.receive(response_to(ctx.request, 200), UDP_PEER)
    # no final response for the INVITE within 64*T1: it is given up (§9.1)
    events = h.advance(64 * T1 + 0.01)
    timeouts = events_of(events, TransactionTimeout)
    assert [(e.transaction, e.timer) for e in timeouts] == [(tx, "cancel")]  # type: ignore[attr-defined]
    assert tx.terminated


def test_cancel_after_final_response_is_a_no_op() -> None:
    h = Harness()
    req = make_request()
    tx = h.send(req)
    h.receive(response_to(req, 200), UDP_PEER)
    assert h.layer.cancel(tx, h.now) is None
    pending = h.send(make_request(branch="z9hG4bKp2"))
    h.layer.cancel(pending, h.now)
    h.receive(response_to(make_request(branch="z9hG4bKp2"), 486), UDP_PEER)
    assert pending.cancel_transaction is None and not pending.cancel_pending


# -- response routing (§18.2.1, §18.2.2, RFC 3581) --------------------------------------------


def _first_response_destination(h: Harness, req: SipRequest, source: Destination) -> Outgoing:
    tx = server_invite(h, req, source)
    h.take_sent()
    h.respond(tx, req.response(486, to_tag="x"))
    [(_, out)] = h.take_sent()
    return out


def test_received_added_when_source_differs_and_response_goes_there() -> None:
    h = Harness()
    req = make_request(via_host="192.168.1.5", via_port=5070)
    out = _first_response_destination(h, req, Destination("udp", "203.0.113.9", 40123))
    assert req.top_via.received == "203.0.113.9"
    assert out.destination == Destination("udp", "203.0.113.9", 5070)
    assert isinstance(out.message, SipResponse)
    assert out.message.top_via.received == "203.0.113.9"


def test_received_not_added_when_source_matches() -> None:
    h = Harness()
    req = make_request(via_host="10.0.0.1", via_port=None)
    out = _first_response_destination(h, req, Destination("udp", "10.0.0.1", 5060))
    assert req.top_via.received is None
    assert out.destination == Destination("udp", "10.0.0.1", 5060)


def test_received_added_for_a_host_name() -> None:
    h = Harness()
    req = make_request(via_host="alice.example.com")
    out = _first_response_destination(h, req, Destination("udp", "10.0.0.1", 5060))
    assert req.top_via.received == "10.0.0.1"
    assert out.destination == Destination("udp", "10.0.0.1", 5060)


def test_rport_filled_and_used() -> None:
    h = Harness()
    req = make_request(via_host="192.168.1.5", via_port=5060, via_params=";rport")
    out = _first_response_destination(h, req, Destination("udp", "203.0.113.9", 61000))
    assert req.top_via.rport == 61000 and req.top_via.received == "203.0.113.9"
    assert out.destination == Destination("udp", "203.0.113.9", 61000)
    assert isinstance(out.message, SipResponse) and out.message.top_via.rport == 61000


def test_rport_sets_received_even_when_same_address() -> None:
    h = Harness()
    req = make_request(via_host="10.0.0.1", via_port=5060, via_params=";rport")
    out = _first_response_destination(h, req, Destination("udp", "10.0.0.1", 5062))
    assert req.top_via.received == "10.0.0.1" and req.top_via.rport == 5062
    assert out.destination.port == 5062


def test_stamping_keeps_other_vias() -> None:
    h = Harness()
    req = make_request(
        via_host="192.168.1.5", extra=("Via: SIP/2.0/UDP proxy.example.com;branch=z9hG4bKp",)
    )
    server_invite(h, req, Destination("udp", "203.0.113.9", 5060))
    vias = req.vias
    assert len(vias) == 2 and vias[0].received == "203.0.113.9"
    assert vias[1].host == "proxy.example.com" and vias[1].received is None


def test_reliable_response_goes_back_on_the_connection() -> None:
    h = Harness()
    req = make_request(transport="TLS", via_host="client.invalid", via_port=None)
    source = Destination("tls", "198.51.100.7", 50111, conn_id=42)
    out = _first_response_destination(h, req, source)
    assert out.destination == source


def test_response_destination_maddr_and_defaults() -> None:
    via = make_request(via_params=";maddr=239.255.255.1", via_port=None).top_via
    assert response_destination(via, UAC) == Destination("udp", "239.255.255.1", 5060)
    via = make_request(via_host="10.1.1.1", via_port=None).top_via
    assert response_destination(via, UAC) == Destination("udp", "10.1.1.1", 5060)


# -- RFC 2543 fallback matching -------------------------------------------------------------


def test_rfc2543_invite_retransmission_ack_and_cancel() -> None:
    h = Harness(TimerConfig(trying_delay=None))
    req = make_request(branch=None)
    tx = server_invite(h, req)
    assert tx.rfc2543
    assert h.receive(make_request(branch=None), UAC) == []  # retransmission
    assert h.layer.server_count == 1
    cancel = make_request("CANCEL", branch=None)
    assert h.layer.find_cancel_target(cancel) is tx
    assert h.layer.find_cancel_target(make_request("CANCEL", branch=None, cseq=2)) is None
    h.respond(tx, req.response(486, to_tag="x"))
    # an ACK whose To tag is not the response's is not this transaction's
    [ev] = h.receive(make_request("ACK", branch=None, to_tag="other"), UAC)
    assert isinstance(ev, AckReceived) and ev.transaction is None
    assert tx.state is S.COMPLETED
    assert h.receive(make_request("ACK", branch=None, to_tag="x"), UAC) == []
    assert tx.state is S.CONFIRMED
    # a different request (other CSeq) is a new transaction
    [ev] = h.receive(make_request(branch=None, cseq=2), UAC)
    assert isinstance(ev, RequestReceived) and ev.transaction is not tx


def test_rfc2543_branch_without_cookie_is_not_used_as_key() -> None:
    h = Harness()
    tx = server_invite(h, make_request(branch="1234"))
    assert tx.rfc2543
    # same old-style branch, other Call-ID: another transaction
    ev = h.receive(make_request(branch="1234", call_id="other"), UAC)
    assert isinstance(ev[0], RequestReceived) and ev[0].transaction is not tx


def test_3261_matching_by_sent_by() -> None:
    h = Harness()
    a = server_invite(h, make_request(via_host="10.0.0.1"))
    [ev] = h.receive(make_request(via_host="10.0.0.3"), Destination("udp", "10.0.0.3", 5060))
    assert isinstance(ev, RequestReceived) and ev.transaction is not a


# -- errors, limits, memory -----------------------------------------------------------------


def test_transport_error_terminates() -> None:
    h = Harness()
    tx = h.send(make_request())
    events = h.layer.transport_error(tx, "ICMP unreachable", h.now)
    assert [type(e) for e in events] == [TransportError, TransactionTerminated]
    assert h.layer.transport_error(tx, "again", h.now) == []
    assert len(h.layer) == 0 and h.layer.next_timeout() is None


def test_transport_failed_by_peer() -> None:
    h = Harness()
    a = h.send(make_request(branch="z9hG4bKa"), UDP_PEER)
    b = h.send(make_request(branch="z9hG4bKb"), Destination("udp", "10.0.0.9", 5060))
    events = h.layer.transport_failed(Destination("udp", "10.0.0.2", 5060), "gone", h.now)
    assert [e.transaction for e in events_of(events, TransportError)] == [a]  # type: ignore[attr-defined]
    assert not b.terminated


def test_unusable_message_is_discarded() -> None:
    h = Harness()
    req = make_request()
    req.headers.remove("CSeq")
    [ev] = h.receive(req, UAC)
    assert isinstance(ev, MessageDiscarded)
    assert len(h.layer) == 0


def test_server_table_limit_answers_503() -> None:
    h = Harness(max_server_transactions=2)
    server_invite(h, make_request(branch="z9hG4bK1"))
    server_invite(h, make_request(branch="z9hG4bK2"))
    h.take_sent()
    [ev] = h.receive(make_request(branch="z9hG4bK3"), UAC)
    assert isinstance(ev, MessageDiscarded)
    [(_, out)] = h.take_sent()
    assert isinstance(out.message, SipResponse) and out.message.status == 503
    assert out.transaction is None


def test_terminate_by_tu() -> None:
    h = Harness()
    tx = server_invite(h, make_request("INVITE"))
    assert [type(e) for e in h.layer.terminate(tx)] == [TransactionTerminated]
    assert len(h.layer) == 0 and h.layer.next_timeout() is None


def test_invite_flood_without_ack_is_cleaned_up_by_timer_h() -> None:
    n = 10_000
    h = Harness()
    layer = h.layer
    txs = []
    for i in range(n):
        req = make_request(branch=f"z9hG4bKflood{i}", call_id=f"c{i}")
        [ev] = layer.receive(req, UAC, h.now)
        assert isinstance(ev, RequestReceived)
        txs.append((ev.transaction, req))
    h.now += 0.1
    for tx, req in txs:
        tx.respond(req.response(486, to_tag="t"), h.now)
    assert layer.server_count == n
    sent = len(layer.outgoing())
    assert sent == n
    terminated = timeouts = retransmissions = 0
    for _ in range(1_000_000):
        when = layer.next_timeout()
        if when is None:
            break
        for ev in layer.handle_timeout(when):
            terminated += isinstance(ev, TransactionTerminated)
            timeouts += isinstance(ev, TransactionTimeout)
        retransmissions += len(layer.outgoing())
    assert terminated == timeouts == n
    assert retransmissions == n * 10  # G: 0.5 1.5 3.5 7.5 11.5 ... 31.5
    assert len(layer) == 0 and layer.timer_count == 0
    assert all(tx.terminated for tx, _ in txs)


def test_client_flood_times_out_and_heap_stays_bounded() -> None:
    n = 10_000
    layer = TransactionLayer(compact_min=64)
    now = 0.0
    reqs = [make_request(branch=f"z9hG4bKc{i}", call_id=f"c{i}") for i in range(n)]
    txs = [layer.send_request(r, UDP_PEER, now) for r in reqs]
    assert layer.timer_count == 2 * n
    # three quarters get a 100 (A and B cancelled): stale entries are compacted away
    k = 3 * n // 4
    for r in reqs[:k]:
        layer.receive(response_to(r, 100), UDP_PEER, now)
    assert layer.timer_count < 2 * n - k
    layer.outgoing()
    events: list[Event] = []
    for _ in range(1_000_000):
        when = layer.next_timeout()
        if when is None:
            break
        events += layer.handle_timeout(when)
        layer.outgoing()
    timeouts = events_of(events, TransactionTimeout)
    assert len(timeouts) == n - k
    assert layer.client_count == k  # the Proceeding ones wait for their final response
    assert all(tx.state is S.PROCEEDING for tx in txs[:k])
    assert layer.timer_count == 0


def test_events_are_slots_dataclasses() -> None:
    h = Harness()
    tx = h.send(make_request())
    assert not hasattr(tx, "__dict__")
    stx = server_invite(h, make_request(branch="z9hG4bKs"))
    assert not hasattr(stx, "__dict__")


def test_pending_cancel_reuses_a_cancel_the_tu_sent() -> None:
    h = Harness()
    req = make_request()
    tx = h.send(req)
    h.layer.cancel(tx, h.now)
    own = h.send(build_cancel(req))
    h.take_sent()
    h.receive(response_to(req, 180), UDP_PEER)
    assert tx.cancel_transaction is own
    assert h.take_sent() == []


def test_transport_failed_respects_connection_ids() -> None:
    h = Harness()
    a = h.send(make_request(branch="z9hG4bKa", transport="TCP"), TCP_PEER)
    other_conn = Destination("tcp", "10.0.0.2", 5060, conn_id=8)
    b = h.send(make_request(branch="z9hG4bKb", transport="TCP"), other_conn)
    events = h.layer.transport_failed(other_conn, "reset", h.now)
    assert [e.transaction for e in events_of(events, TransportError)] == [b]  # type: ignore[attr-defined]
    assert not a.terminated


def test_stray_ack_and_overload_503_has_to_tag() -> None:
    h = Harness(max_server_transactions=0)
    [ev] = h.receive(make_request("ACK", to_tag="x"), UAC)
    assert isinstance(ev, AckReceived) and ev.transaction is None
    h.receive(make_request("OPTIONS"), UAC)
    [(_, out)] = h.take_sent()
    assert isinstance(out.message, SipResponse) and out.message.to.tag


def test_timer_f_over_reliable_is_a_408_for_the_tu() -> None:
    h = Harness()
    req = make_request("MESSAGE", transport="TCP")
    tx = h.send(req, TCP_PEER)
    assert h.advance(64 * T1 - 0.01) == []
    events = h.advance(0.02)
    assert [type(e) for e in events] == [TransactionTimeout, TransactionTerminated]
    timeout = events[0]
    assert isinstance(timeout, TransactionTimeout) and timeout.timer == "F"
    assert timeout.transaction is tx
    # what the TU does with it (§8.1.3.1): a 408 of its own making
    synthetic = timeout.transaction.request.response(408)
    assert synthetic.status == 408 and synthetic.reason == "Request Timeout"
    assert h.sent_times() == [0]


@pytest.mark.parametrize("peer", [UDP_PEER, TCP_PEER], ids=["udp", "tcp"])
def test_timer_m_same_over_any_transport(peer: Destination) -> None:
    h = Harness()
    req = make_request(transport=peer.transport.upper())
    tx = h.send(req, peer)
    h.receive(response_to(req, 200), peer)
    assert tx.state is S.ACCEPTED
    assert h.layer.next_timeout() == pytest.approx(h.now + 64 * T1)
    assert [type(e) for e in h.advance(64 * T1)] == [TransactionTerminated]


@pytest.mark.parametrize("source", [UAC, UAC_TCP], ids=["udp", "tcp"])
def test_timer_l_same_over_any_transport(source: Destination) -> None:
    h = Harness(TimerConfig(trying_delay=None))
    req = make_request(transport=source.transport.upper(), via_port=source.port)
    tx = server_invite(h, req, source)
    h.respond(tx, req.response(200, to_tag="x"))
    assert h.layer.next_timeout() == pytest.approx(h.now + 64 * T1)
    assert [type(e) for e in h.advance(64 * T1)] == [TransactionTerminated]
    assert [o.destination for _, o in h.take_sent()] == [source]
