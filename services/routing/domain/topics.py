"""The report topics the classifier assigns and the routing rules and directory use."""

TOPICS: tuple[str, ...] = (
    "bpjs_kesehatan",  # BPJS / health insurance (JKN, KIS)
    "adminduk",  # population documents: e-KTP, KK, birth and death certificates
    "listrik",  # electricity and its subsidy
    "bansos",  # social assistance: bansos, PKH, BLT, BPNT
    "jalan",  # roads, potholes, bridges, street lights
    "sampah",  # rubbish
    "pencemaran",  # pollution: air, water, noise, smell
    "ketertiban",  # public order
    "rokok",  # smoking and vaping in offices and no-smoking areas
    "bbm_lpg",  # fuel and LPG
    "transportasi",  # public transport and traffic
    "pungli",  # illegal fees, extortion, bribes by officials
    "layanan_kesehatan",  # hospitals, puskesmas, medicines
    "pendidikan",  # schools, PPDB, teachers, scholarships
)
