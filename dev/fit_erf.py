"""Fit the two polynomials of verff (nn/vecmath.h) and report their float32 error.

    /usr/bin/python3 dev/fit_erf.py

erf(x) = x P(x^2) on |x| <= 1.2 (P of degree 6) and erf(x) = 1 - e^{-x^2} Q(x)
on 1.2 < x < 4 (Q of degree 10 in x - 2.6). Least squares on Chebyshev nodes
is close to minimax for smooth functions like these.
"""
from math import erf, erfc

import numpy as np

SPLIT = 1.2


def fits():
    verf, verfc = np.vectorize(erf), np.vectorize(erfc)
    theta = np.linspace(1e-4, np.pi - 1e-4, 4000)
    t = (np.cos(theta) * 0.5 + 0.5) * SPLIT * SPLIT  # nodes in x^2, avoiding x = 0
    x = np.sqrt(t)
    p = np.polyfit(t, verf(x) / x, 6)
    x = np.cos(np.linspace(0, np.pi, 4000)) * (4 - SPLIT) / 2 + (4 + SPLIT) / 2
    q = np.polyfit(x - 2.6, verfc(x) * np.exp(x * x), 10)
    return p, q


def horner32(c, v):
    acc = np.float32(c[0])
    for k in c[1:]:
        acc = np.float32(acc * v + np.float32(k))
    return acc


def main():
    p, q = fits()
    print("P:", ", ".join("%.9ef" % c for c in p))
    print("Q:", ", ".join("%.9ef" % c for c in q))
    f = np.float32
    worst = 0.0
    for xv in np.linspace(0, 4.5, 20001).astype(np.float32):
        if xv <= SPLIT:
            r = horner32(p, f(xv * xv)) * xv
        elif xv < 3.92:
            r = f(1) - horner32(q, f(xv - f(2.6))) * f(np.exp(-f(xv * xv)))
        else:
            r = f(1)
        worst = max(worst, abs(float(r) - erf(float(xv))))
    print("worst absolute error in float32: %.3e" % worst)


if __name__ == "__main__":
    main()
