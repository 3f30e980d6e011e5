"""Clinical cohort tables and the events derived from them.

``schema``    table schemas, strict reading and validation of CSV/XLSX with unit conversion;
``therapy``   lines of therapy after CAR T, regimen classes, time to next treatment;
``endpoints`` PFS/OS from infusion, PFS2 and OS from progression as event tables;
``patterns``  progression patterns and EMD/PMD status transitions.
"""
