"""The semcollab dashboard (Streamlit + Plotly). Entry point: ``streamlit run app/main.py``; layout
and conventions: app/state.py."""
