"""Published scoring rules as named, versioned rulesets.

Modules (import them directly; this package imports nothing so that independent rulesets stay
independent): ``carpet.scores.imwg`` (IMWG 2016 response, progression, refractory status) and
``carpet.scores.risk`` (IPI, aaIPI, CAR-HEMATOTOX, ISS, R-ISS, R2-ISS, high-risk cytogenetics);
imaging rulesets (Deauville, IMPeTUs, metabolic response) live beside them.
"""
