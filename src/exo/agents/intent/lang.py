"""French or English, for the language of the answer.

A sentence is short, so a statistical detector has little to go on; function words and
accents decide almost every case. Ties go to English, the catalogue's own language.
"""

from __future__ import annotations

import re

from exo.agents.intent.normalise import fold

_FR = frozenset(str.split("""
le la les l un une des du de d au aux et ou est sont suis es ai as a-t-il quel quelle quels
quelles qui que qu quoi combien comment pourquoi ou où mon ma mes ton ta tes son sa ses
ce cette ces je tu il elle nous vous ils moi toi sur dans pour avec sans pas ne plus tout
tous toutes reste-t-il y-a-t-il y a-t-il est-ce s'il te plait plaît merci bonjour affiche
montre liste donne installe supprime desinstalle désinstalle tue arrete arrête eteins éteins
mets jour cherche trouve revoque révoque retire enleve enlève passe active reviens annule
aide memoire mémoire processeur utilisation disque reseau réseau paquet fichier pilote
capacites capacités droits etat état systeme système machine ordinateur peux-tu sais-tu
qu'est-ce quelle lance ferme termine stoppe ajoute efface actualise restaure rétablis
charge processus en me faut il installer installe-moi recherche localise extinction appelle
convertis bonne nuit pleine puissance performances maximales aide-moi peux vous-pouvez
depuis quand temps fonctionnement espace libre utilisée utilisé occupé chargé quand
"""))
_EN = frozenset(str.split("""
the a an and or is are am was what what's which who how why where when my your his her its
this that these those i you it we they me on in for with without not no all any of to from
please show list display give install remove uninstall kill stop terminate shut down find
search update upgrade revoke help memory processor usage disk network package file driver
capabilities rights status system machine computer can could would do does did there left
free used much many running process processes switch turn off mode save power use need
"""))
_FR_CHARS = re.compile(r"[éèêàùâîôûçœë]")
_WORD = re.compile(r"[\w'-]+")


def detect_language(text: str) -> str:
    """``"fr"`` or ``"en"``."""
    words = _WORD.findall(text.lower())
    fr = sum(1 for w in words if w in _FR or fold(w) in _FR or w.split("'")[0] in ("l", "d",
                                                                                   "qu", "j",
                                                                                   "n", "s",
                                                                                   "c", "m"))
    en = sum(1 for w in words if w in _EN)
    fr += 2 * len(_FR_CHARS.findall(text.lower()))
    return "fr" if fr > en else "en"
